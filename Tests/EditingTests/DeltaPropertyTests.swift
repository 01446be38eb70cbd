import Foundation
import Models
import PropertyBased
import TensorCore
import Testing

@testable import Editing

/// Applying any delta and reverting it gives back the model's weights bit for bit, and a saved
/// delta reads back bit for bit.
@Suite struct DeltaPropertyTests {
    @Test func applyThenRevertIsBitwiseAndFilesRoundTrip() async throws {
        let model = try TestModels.tinyLlama()
        let kinds: [ParameterID.Kind] = [
            .feedForwardDown, .feedForwardUp, .feedForwardGate, .attentionQuery, .attentionKey, .attentionValue, .attentionOutput,
        ]
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-delta-prop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        await propertyCheck(
            count: 60, input: Gen.int(in: 0...1), Gen.int(in: 0..<kinds.count), Gen.int(in: 1...3),
            Gen.float(in: -3...3).array(of: 1...32)
        ) { layer, kind, rank, pool in
            let id = ParameterID(layer: layer, kinds[kind])
            guard let w = model.transformer.weights.tensor(id, config: model.config) else { return }
            let before = model.transformer.weights.tensor(id, config: model.config)!.scalars.map(\.bitPattern)
            let value = { (i: Int) in pool[i % pool.count] }
            // Low rank for odd ranks, dense for even ones: both kinds of entry.
            let update: WeightDelta.Update =
                rank % 2 == 0
                ? .dense(Tensor(shape: w.shape, values: (0..<w.count).map(value)))
                : .lowRank(
                    left: Tensor(shape: [w.shape[0], rank], values: (0..<(w.shape[0] * rank)).map(value)),
                    right: Tensor(shape: [rank, w.shape[1]], values: (0..<(rank * w.shape[1])).map { value($0 + 7) }))
            let delta = WeightDelta(entries: [.init(id, update)])
            let changes = update.materialized().scalars.contains { $0 != 0 }
            do {
                let applied = try model.transformer.apply(delta)
                #expect(
                    !changes || model.transformer.weights.tensor(id, config: model.config)!.scalars.map(\.bitPattern) != before,
                    "\(id): the delta changed nothing")
                applied.revert()
                #expect(model.transformer.weights.tensor(id, config: model.config)!.scalars.map(\.bitPattern) == before)
                let url = folder.appendingPathComponent("\(UUID().uuidString).safetensors")
                try delta.save(to: url)
                let loaded = try WeightDelta.load(from: url)
                #expect(
                    loaded.entries.map(\.update).map { $0.materialized().scalars.map(\.bitPattern) }
                        == delta.entries.map(\.update).map { $0.materialized().scalars.map(\.bitPattern) })
            } catch {
                Issue.record("\(id): \(error)")
            }
        }
    }
}
