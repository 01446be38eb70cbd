import Foundation
import ModelFormats
import Models
import TensorCore
import Testing

@testable import Editing

/// Deltas written as LoRA adapters: read back, `B·A` must be exactly what the edit changed in
/// each tensor of the checkpoint the adapter is for (llama.cpp's names and q/k permutation for
/// `lora`, transformers' names and GPT-2's Conv1D orientation for `peft`).
@Suite struct AdapterExportTests {
    typealias Support = ExportTestSupport
    static let fixtures = ["tiny-llama.gguf", "tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma3"]

    /// What the edit changed in each checkpoint tensor, in the checkpoint's layout.
    static func changes(
        _ model: LanguageModel, naming: CheckpointNaming, edit: (LanguageModel) throws -> Void
    ) rethrows
        -> [String: (shape: [Int], difference: [Float])]
    {
        let before = Dictionary(uniqueKeysWithValues: model.transformer.checkpointTensors(naming).map { ($0.name, $0.values()) })
        try edit(model)
        var changes: [String: (shape: [Int], difference: [Float])] = [:]
        for tensor in model.transformer.checkpointTensors(naming) {
            let after = tensor.values()
            let old = before[tensor.name]!
            guard after != old else { continue }
            changes[tensor.name] = (tensor.shape, zip(after, old).map { $0 - $1 })
        }
        return changes
    }

    /// `scale · B·A` for row-major `b` `[out, r]` and `a` `[r, in]`, transposed when the checkpoint stores `[in, out]`.
    static func product(b: [Float], a: [Float], out: Int, rank r: Int, in n: Int, scale: Float, transposed: Bool) -> [Float] {
        var result = [Float](repeating: 0, count: out * n)
        for o in 0..<out {
            for i in 0..<n {
                var sum: Float = 0
                for k in 0..<r { sum += b[o * r + k] * a[k * n + i] }
                result[transposed ? i * out + o : o * n + i] = scale * sum
            }
        }
        return result
    }

    static func expectClose(_ x: [Float], _ y: [Float], _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(x.count == y.count, "\(name)", sourceLocation: sourceLocation)
        let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5, "\(name): worst difference \(worst)", sourceLocation: sourceLocation)
    }

    @Test(arguments: fixtures)
    func llamaCppAdapterHoldsExactlyTheEdit(_ name: String) throws {
        let model = try LanguageModel.load(TestModels.fixtures.appendingPathComponent(name))
        var delta = WeightDelta()
        let changes = try Self.changes(model, naming: .gguf) { delta = try Support.edit($0) }
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edit-lora.gguf")
            let result = try AdapterExport.write([delta], of: model, to: out, format: .lora)
            let file = try GGUFFile(url: out)
            #expect(file.string("general.type") == "adapter" && file.string("adapter.type") == "lora")
            #expect(file.string("general.architecture") == model.config.architecture.name)
            let alpha = try #require(file.metadata["adapter.lora.alpha"]?.doubleValue)
            #expect(Int(alpha) == result.rank)
            #expect(Set(result.modules.map(\.tensor)) == Set(changes.keys))
            #expect(Set(file.tensorNames) == Set(changes.keys.flatMap { [$0 + ".lora_a", $0 + ".lora_b"] }))
            for (tensor, change) in changes {
                let (out, columns) = (change.shape[0], change.shape[1])
                let a = file.tensorInfo(tensor + ".lora_a")!
                let b = file.tensorInfo(tensor + ".lora_b")!
                // llama.cpp's checks: a's ne[0] and b's ne[1] are the base tensor's, a's ne[1] is b's ne[0].
                #expect(a.dimensions == [columns, result.rank] && b.dimensions == [result.rank, out], "\(tensor)")
                let product = Self.product(
                    b: try file.readFloats(tensor + ".lora_b"), a: try file.readFloats(tensor + ".lora_a"),
                    out: out, rank: result.rank, in: columns, scale: Float(alpha) / Float(result.rank),
                    transposed: false)
                Self.expectClose(product, change.difference, tensor)
            }
            // Random dense updates have full rank; the low-rank ones keep theirs (2).
            for module in result.modules {
                let dense = delta.entries.filter { Support.checkpointName($0.parameter, model) == module.tensor && !$0.isLowRank }
                #expect(module.denseRanks.count == dense.count, "\(module.tensor)")
                for (rank, of) in module.denseRanks { #expect(rank == of, "\(module.tensor)") }
            }
        }
    }

    @Test(arguments: fixtures)
    func peftAdapterHoldsExactlyTheEdit(_ name: String) throws {
        let model = try LanguageModel.load(TestModels.fixtures.appendingPathComponent(name))
        var delta = WeightDelta()
        let changes = try Self.changes(model, naming: .huggingFace) { delta = try Support.edit($0) }
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edit-peft")
            let result = try AdapterExport.write([delta], of: model, to: out, format: .peft)
            let config = try JSONValue.parse(Data(contentsOf: out.appendingPathComponent("adapter_config.json")))
            #expect(config["peft_type"]?.stringValue == "LORA")
            #expect(config["r"]?.intValue == result.rank && config["lora_alpha"]?.intValue == result.rank)
            let transposed = model.config.architecture.name == "gpt2"
            #expect(config["fan_in_fan_out"] == .bool(transposed))
            let targets = Set(config["target_modules"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            #expect(targets == Set(changes.keys.map { String($0.dropLast(".weight".count)) }))
            let file = try SafetensorsFile(url: out.appendingPathComponent("adapter_model.safetensors"))
            #expect(file.tensorNames.count == 2 * changes.count)
            for (tensor, change) in changes {
                let module = "base_model.model." + tensor.dropLast(".weight".count)
                // PEFT's factors are [r, in] and [out, r] whatever the module stores.
                let (rows, columns) = transposed ? (change.shape[1], change.shape[0]) : (change.shape[0], change.shape[1])
                #expect(file.shape(of: module + ".lora_A.weight") == [result.rank, columns], "\(tensor)")
                #expect(file.shape(of: module + ".lora_B.weight") == [rows, result.rank], "\(tensor)")
                let product = Self.product(
                    b: try file.readFloats(module + ".lora_B.weight"), a: try file.readFloats(module + ".lora_A.weight"),
                    out: rows, rank: result.rank, in: columns, scale: 1, transposed: transposed)
                Self.expectClose(product, change.difference, tensor)
            }
        }
    }

    @Test func sequentialEditsOfOneMatrixStackAlongTheRank() throws {
        let model = try LanguageModel.load(TestModels.fixtures.appendingPathComponent("tiny-llama.gguf"))
        let id = ParameterID(layer: 1, .feedForwardDown)
        let first = WeightDelta(entries: [TestModels.randomEntry(model, id, seed: 1, lowRank: true)])
        let second = WeightDelta(entries: [TestModels.randomEntry(model, id, seed: 2, lowRank: true)])
        let changes = try Self.changes(model, naming: .gguf) {
            try $0.transformer.apply(first)
            try $0.transformer.apply(second)
        }
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("two.gguf")
            let result = try AdapterExport.write([first, second], of: model, to: out, format: .lora)
            #expect(result.rank == 4 && result.modules == [.init(tensor: id.name, rank: 4, denseRanks: [])])
            let file = try GGUFFile(url: out)
            let change = changes[id.name]!
            Self.expectClose(
                Self.product(
                    b: try file.readFloats(id.name + ".lora_b"), a: try file.readFloats(id.name + ".lora_a"),
                    out: change.shape[0], rank: 4, in: change.shape[1], scale: 1, transposed: false),
                change.difference, id.name)
        }
    }

    @Test func lowRankDenseUpdatesKeepTheirRank() throws {
        // A dense update that is a rank-3 product is stored at rank 3, exactly.
        var rng = SplitMix64(seed: 7)
        let l = Tensor(shape: [6, 3], values: (0..<18).map { _ in Float(rng.nextUnit() - 0.5) })
        let r = Tensor(shape: [3, 5], values: (0..<15).map { _ in Float(rng.nextUnit() - 0.5) })
        let dense = WeightDelta.Update.lowRank(left: l, right: r).materialized()
        let (left, right) = try AdapterExport.lowRankFactors(dense)
        #expect(left.shape == [6, 3] && right.shape == [3, 5])
        Self.expectClose(WeightDelta.Update.lowRank(left: left, right: right).materialized().scalars, dense.scalars, "product")
        let (zeroLeft, _) = try AdapterExport.lowRankFactors(Tensor(zeros: [4, 4]))
        #expect(zeroLeft.shape == [4, 0])
    }

    @Test func destinationsOfTheWrongKindOrTakenAreRefused() throws {
        let source = TestModels.fixtures.appendingPathComponent("tiny-llama.gguf")
        let model = try LanguageModel.load(source)
        let delta = WeightDelta(entries: [TestModels.randomEntry(model, ParameterID(layer: 0, .feedForwardDown), seed: 3, lowRank: true)])
        try Support.withFolder { folder throws in
            let gguf = folder.appendingPathComponent("a.gguf")
            let dir = folder.appendingPathComponent("a")
            #expect(throws: ExportError.self) { try AdapterExport.write([delta], of: model, to: dir, format: .lora) }
            #expect(throws: ExportError.self) { try AdapterExport.write([delta], of: model, to: gguf, format: .peft) }
            #expect(throws: ExportError.destinationIsSource(path: source.path)) {
                try AdapterExport.write([delta], of: model, to: source, format: .lora, overwrite: true)
            }
            try Data("mine".utf8).write(to: gguf)
            #expect(throws: ExportError.notAnExport(path: gguf.path)) {
                try AdapterExport.write([delta], of: model, to: gguf, format: .lora, overwrite: true)
            }
            #expect(try Data(contentsOf: gguf) == Data("mine".utf8))
            let earlier = folder.appendingPathComponent("b.gguf")
            try AdapterExport.write([delta], of: model, to: earlier, format: .lora)
            #expect(throws: ExportError.self) { try AdapterExport.write([delta], of: model, to: earlier, format: .lora) }
            try AdapterExport.write([delta], of: model, to: earlier, format: .lora, overwrite: true)
            try AdapterExport.write([delta], of: model, to: dir, format: .peft)
            try AdapterExport.write([delta], of: model, to: dir, format: .peft, overwrite: true)
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)) == ["a.gguf", "b.gguf", "a"])
            #expect(throws: ExportError.self) {
                try AdapterExport.write([WeightDelta()], of: model, to: folder.appendingPathComponent("c.gguf"), format: .lora)
            }
        }
    }
}

extension ExportTestSupport {
    /// The GGUF tensor a parameter lives in (`blk.0.attn_q.weight`; GPT-2's q/k/v share `attn_qkv`).
    static func checkpointName(_ id: ParameterID, _ model: LanguageModel) -> String? {
        guard let (matrix, rows) = model.transformer.weights.matrix(id, config: model.config) else { return nil }
        return model.transformer.checkpointTensors(.gguf).first {
            guard let o = $0.origin else { return false }
            return o.matrix === matrix && o.rows.lowerBound <= rows.lowerBound && rows.upperBound <= o.rows.upperBound
        }?.name
    }
}

extension WeightDelta.Entry {
    var isLowRank: Bool {
        if case .lowRank = update { return true }
        return false
    }
}
