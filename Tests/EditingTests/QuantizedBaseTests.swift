import Foundation
import TensorCore
import Testing

@testable import Editing
@testable import Models

/// The default model computed on its Q4_1 blocks (`precision: .native`) against the float32
/// path, and edits on the quantized base.
@Suite(.enabled(if: TestModels.hasDefaultModel, "the default model has not been fetched"), .serialized)
struct QuantizedBaseTests {
    static let text = """
        The lighthouse stands on a rock at the mouth of the bay. It was built in 1850 and its lamp can be seen \
        from twenty miles away. Keepers lived in the small house beside the tower until the light was automated. \
        The old mill by the river ground wheat for the village for two hundred years.
        """

    static func kl(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, count: Int) -> Double {
        let lp = Kernels.logSumExp(p, count: count)
        let lq = Kernels.logSumExp(q, count: count)
        var sum = 0.0
        for v in 0..<count {
            let a = Double(p[v] - lp)
            let b = Double(q[v] - lq)
            sum += exp(a) * (a - b)
        }
        return sum
    }

    static func argmax(_ p: UnsafePointer<Float>, count: Int) -> Int {
        (0..<count).max { p[$0] < p[$1] }!
    }

    @Test func nativeWeightsStayInBlocksAndMatchFloat32() throws {
        let exact = try TestModels.defaultModel()
        let native = try LanguageModel.load(TestModels.defaultModelURL, precision: .native)
        #expect(native.transformer.precision == .native)
        let layers = native.transformer.weights.blocks
        #expect(layers.allSatisfy { $0.feedForwardDown.isQuantized && $0.qkv.isQuantized && $0.feedForwardInput.isQuantized })
        #expect(!exact.transformer.weights.blocks[0].feedForwardDown.isQuantized)

        // A whole sequence: tiles of dequantized rows and BLAS, exact up to summation order.
        let tokens = native.encode(Self.text)
        let v = native.config.vocabularySize
        let a = try exact.transformer.forward([tokens])
        let b = try native.transformer.forward([tokens])
        var worst: Float = 0
        for i in 0..<a.count { worst = max(worst, abs(a.pointer[i] - b.pointer[i])) }
        #expect(worst < 2e-3, "prefill logits differ by \(worst)")

        // Decoding token by token (the dot-product kernels): float activations give the
        // float32 path's choices; int8 activations (llama.cpp's way) move them a little.
        let int8 = try LanguageModel.load(TestModels.defaultModelURL, precision: .nativeInt8)
        for (model, minimumAgreement, maximumKL) in [(native, 1.0, 1e-5), (int8, 0.85, 0.01)] {
            let cache = KVCache(config: model.config)
            var agree = 0
            var kl = 0.0
            for (t, token) in tokens.enumerated() {
                let step = try model.transformer.forward([[token]], caches: [cache], logits: .last)
                let row = a.pointer + t * v
                if Self.argmax(step.pointer, count: v) == Self.argmax(row, count: v) { agree += 1 }
                kl += Self.kl(row, step.pointer, count: v)
            }
            let agreement = Double(agree) / Double(tokens.count)
            let meanKL = kl / Double(tokens.count)
            #expect(
                agreement >= minimumAgreement && meanKL < maximumKL,
                "\(model.transformer.precision): top-1 agreement \(agreement), mean KL \(meanKL) over \(tokens.count) positions")
        }
    }

    /// A delta on a quantized base makes float32 copies of the matrices it writes (only those),
    /// gives the float32 path's logits, and its revert puts the blocks back: the logits are then
    /// bit for bit the ones before.
    @Test func editsMaterialiseOnlyWhatTheyWriteAndRevertToTheBlocks() throws {
        let exact = try TestModels.defaultModel()
        let native = try LanguageModel.load(TestModels.defaultModelURL, precision: .native)
        let delta = WeightDelta(entries: [
            TestModels.randomEntry(native, ParameterID(layer: 3, .feedForwardDown), seed: 1, lowRank: true),
            TestModels.randomEntry(native, ParameterID(layer: 5, .attentionValue), seed: 2, lowRank: true),
            TestModels.randomEntry(native, ParameterID(layer: 5, .attentionQuery), seed: 3, lowRank: true),
        ])
        let tokens = native.encode(Self.text)
        let before = try native.transformer.forward([tokens]).scalars
        let applied = try native.transformer.apply(delta)
        let weights = native.transformer.weights
        #expect(!weights.blocks[3].feedForwardDown.isQuantized && !weights.blocks[5].qkv.isQuantized)
        #expect(
            weights.blocks[4].feedForwardDown.isQuantized && weights.blocks[3].qkv.isQuantized
                && weights.blocks[3].feedForwardInput.isQuantized)
        let edited = try native.transformer.forward([tokens])
        let exactApplied = try exact.transformer.apply(delta)
        let reference = try exact.transformer.forward([tokens])
        exactApplied.revert()
        var changed: Float = 0
        var worst: Float = 0
        for i in 0..<edited.count {
            changed = max(changed, abs(edited.pointer[i] - before[i]))
            worst = max(worst, abs(edited.pointer[i] - reference.pointer[i]))
        }
        #expect(changed > 0.1 && worst < 2e-3, "the edit moved the logits by \(changed); native and float32 differ by \(worst)")

        applied.revert()
        #expect(weights.blocks[3].feedForwardDown.isQuantized && weights.blocks[5].qkv.isQuantized)
        #expect(try native.transformer.forward([tokens]).scalars.map(\.bitPattern) == before.map(\.bitPattern))
    }

    /// Gradients through frozen quantized layers (input gradients from dequantized tiles) equal
    /// the float32 path's, and leave the blocks as they are.
    @Test func gradientsThroughQuantizedLayersMatchFloat32() throws {
        let exact = try TestModels.defaultModel()
        let native = try LanguageModel.load(TestModels.defaultModelURL, precision: .native)
        let tokens = native.encode("The Eiffel Tower is located in the city of")
        let target = native.encodeContinuation(" Rome")[0]
        let down = ParameterID(layer: 6, .feedForwardDown)
        func gradients(_ model: LanguageModel) throws -> (delta: [Float], weight: [Float]) {
            let v = model.config.vocabularySize
            let delta = Tensor(zeros: [model.config.hiddenSize])
            let tape = try model.transformer.record(
                [tokens], interventions: [.add(.feedForwardOutput, layer: 4, delta: delta, rows: [tokens.count - 1])],
                logits: .last, gradients: GradientRequest(parameters: [down]))
            let dLogits = Tensor(zeros: tape.logits.shape)
            _ = Losses.crossEntropy(
                logits: tape.logits.pointer, rows: 1, vocabularySize: v, ldLogits: v, targets: [target],
                dLogits: dLogits.pointer, ldDLogits: v)
            let result = tape.backward(dLogits: dLogits)
            return (result.interventions[0]!.scalars, result.parameters[down]!.scalars)
        }
        let (a, b) = (try gradients(exact), try gradients(native))
        func relative(_ x: [Float], _ y: [Float]) -> Float {
            let difference = zip(x, y).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            return (difference / max(x.reduce(0) { $0 + $1 * $1 }, 1e-30)).squareRoot()
        }
        #expect(
            relative(a.delta, b.delta) < 1e-4 && relative(a.weight, b.weight) < 1e-4,
            "delta gradient off by \(relative(a.delta, b.delta)), weight gradient by \(relative(a.weight, b.weight))")
        #expect(native.transformer.weights.blocks.allSatisfy { $0.feedForwardDown.isQuantized && $0.qkv.isQuantized })
    }

    /// A GGUF export of an edit on the quantized base is byte for byte the float32 path's.
    @Test func exportsOfAQuantizedBaseEqualFloat32Exports() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-native-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var files: [Data] = []
        var rewritten: [[String]] = []
        for precision in [WeightPrecision.float32, .native] {
            let model = try LanguageModel.load(TestModels.defaultModelURL, precision: precision)
            try model.transformer.apply(
                WeightDelta(entries: [
                    TestModels.randomEntry(model, ParameterID(layer: 5, .attentionQuery), seed: 4, lowRank: true),
                    TestModels.randomEntry(model, ParameterID(layer: 7, .feedForwardDown), seed: 5, lowRank: true),
                ]))
            let url = folder.appendingPathComponent("\(precision.rawValue).gguf")
            rewritten.append(try ModelExport.write(model, to: url).rewrittenTensors)
            files.append(try Data(contentsOf: url))
        }
        #expect(rewritten[0] == ["blk.5.attn_q.weight", "blk.7.ffn_down.weight"] && rewritten[1] == rewritten[0], "\(rewritten)")
        #expect(files[0] == files[1])
    }
}
