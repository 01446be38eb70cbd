import Foundation
import ModelFormats
import Models
import TensorCore
import Testing

@testable import Editing

@Suite struct WeightDeltaTests {
    func randomDelta(_ model: LanguageModel, _ id: ParameterID, seed: UInt64, lowRank: Bool = false) -> WeightDelta.Entry {
        TestModels.randomEntry(model, id, seed: seed, lowRank: lowRank)
    }

    @Test func applyChangesLogitsAndRevertRestoresBitwise() throws {
        let model = try TestModels.tinyLlama()
        let tokens = [[1, 5, 9, 3]]
        let before = try model.logits(tokens)[0].scalars
        let down = ParameterID(layer: 1, .feedForwardDown)
        let up = ParameterID(layer: 0, .feedForwardUp)
        let w0 = model.transformer.weights.tensor(down, config: model.config)!.scalars
        let fused0 = model.transformer.weights.blocks[0].feedForwardInput.scalars

        let first = try model.transformer.apply(WeightDelta(entries: [randomDelta(model, down, seed: 1)]))
        let second = try model.transformer.apply(
            WeightDelta(entries: [
                randomDelta(model, up, seed: 2, lowRank: true),
                randomDelta(model, down, seed: 3),
            ]))
        #expect(try model.logits(tokens)[0].scalars != before)
        second.revert()
        first.revert()
        #expect(try model.logits(tokens)[0].scalars == before)
        #expect(model.transformer.weights.tensor(down, config: model.config)!.scalars == w0)
        #expect(model.transformer.weights.blocks[0].feedForwardInput.scalars == fused0)
    }

    @Test func badDeltasChangeNothing() throws {
        let model = try TestModels.tinyLlama()
        let down = ParameterID(layer: 0, .feedForwardDown)
        let w0 = model.transformer.weights.tensor(down, config: model.config)!.scalars
        var nan = randomDelta(model, down, seed: 1)
        if case .dense(let t) = nan.update {
            t.pointer[7] = .nan
            nan.update = .dense(t)
        }
        // A good entry first: it must not be applied either.
        let good = randomDelta(model, ParameterID(layer: 1, .feedForwardDown), seed: 2)
        #expect(throws: DeltaError.notFinite(parameter: down.name, file: "d.safetensors")) {
            try model.transformer.apply(WeightDelta(entries: [good, nan]), source: "d.safetensors")
        }
        #expect(throws: DeltaError.self) {
            try model.transformer.apply(WeightDelta(entries: [.init(down, .dense(Tensor(zeros: [3, 3])))]))
        }
        #expect(throws: DeltaError.unknownParameter("blk.99.ffn_down.weight", file: "delta")) {
            try model.transformer.apply(
                WeightDelta(entries: [.init(ParameterID(layer: 99, .feedForwardDown), .dense(Tensor(zeros: [1, 1])))]))
        }
        #expect(model.transformer.weights.tensor(down, config: model.config)!.scalars == w0)
        #expect(
            model.transformer.weights.tensor(ParameterID(layer: 1, .feedForwardDown), config: model.config)!.scalars
                == (try TestModels.tinyLlama()).transformer.weights.tensor(ParameterID(layer: 1, .feedForwardDown), config: model.config)!
                .scalars)
    }

    @Test func saveAndLoadRoundTripWithMetadata() throws {
        let model = try TestModels.tinyLlama()
        let down = ParameterID(layer: 1, .feedForwardDown)
        let delta = WeightDelta(
            entries: [
                randomDelta(model, down, seed: 4), randomDelta(model, down, seed: 5, lowRank: true),
                randomDelta(model, ParameterID(layer: 0, .attentionQuery), seed: 6),
            ],
            metadata: ["ibke.method": "test", "ibke.model_sha256": "abc"])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("delta-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try delta.save(to: url)
        let loaded = try WeightDelta.load(from: url)
        #expect(loaded.metadata == delta.metadata)
        #expect(loaded.parameters == delta.parameters)
        for (a, b) in zip(loaded.entries, delta.entries) {
            #expect(a.update.materialized().scalars == b.update.materialized().scalars)
            if case .lowRank = b.update { if case .dense = a.update { Issue.record("low-rank entry came back dense") } }
        }
    }

    @Test func loadingAnOrdinarySafetensorsFileIsAClearError() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("plain-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafetensorsWriter.write(tensors: [.init(name: "x", shape: [1], floats: [1])], to: url)
        #expect(
            throws: DeltaError.malformed(
                file: url.lastPathComponent,
                detail: "not an IBKE delta (no ibke.format = ibke-delta-1 in the header)")
        ) {
            try WeightDelta.load(from: url)
        }
    }

    /// A delta file cut short (a failed copy) is refused with an error naming the file.
    @Test func aTruncatedDeltaFileIsAClearError() throws {
        let model = try TestModels.tinyLlama()
        let delta = WeightDelta(
            entries: [TestModels.randomEntry(model, ParameterID(layer: 0, .feedForwardDown), seed: 3)],
            metadata: ["ibke.method": "test"])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cut-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try delta.save(to: url)
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 100).write(to: url)
        do {
            _ = try WeightDelta.load(from: url)
            Issue.record("a truncated delta was loaded")
        } catch {
            #expect("\(error)".contains(url.lastPathComponent), "\(error)")
        }
    }

    @Test func checkModelComparesTheModelHashTheDeltaNames() throws {
        let signed = WeightDelta(metadata: [WeightDelta.modelHashKey: "abc"])
        try signed.checkModel(hash: "abc", source: "d.safetensors", allowUnverified: false)
        #expect(throws: DeltaError.wrongModel(deltaModel: "abc", model: "def", file: "d.safetensors")) {
            try signed.checkModel(hash: "def", source: "d.safetensors", allowUnverified: true)
        }
        #expect(throws: DeltaError.unverifiedModel(file: "d.safetensors")) {
            try WeightDelta().checkModel(hash: "def", source: "d.safetensors", allowUnverified: false)
        }
        try WeightDelta().checkModel(hash: "def", source: "d.safetensors", allowUnverified: true)
    }
}
