import Editing
import Foundation
import Models
import TensorCore
import TestSupport

/// Models the editing tests run on: ModelsTests' tiny checkpoints (read in place) and the
/// default model when it has been fetched.
enum TestModels {
    static let fixtures = ModelFixtures.folder

    /// A fresh copy of the tiny Llama (each test edits its own).
    static func tinyLlama() throws -> LanguageModel {
        try LanguageModel.load(fixtures.appendingPathComponent("tiny-llama"))
    }

    static var defaultModelURL: URL { IBKEHome.model(.smolLM2) }
    static var hasDefaultModel: Bool { IBKEHome.isFetched(.smolLM2) }

    static func defaultModel() throws -> LanguageModel { try LanguageModel.load(defaultModelURL) }

    /// A random update of one matrix (entries in ±0.05), dense or of rank 2.
    static func randomEntry(_ model: LanguageModel, _ id: ParameterID, seed: UInt64, lowRank: Bool = false) -> WeightDelta.Entry {
        let shape = model.transformer.weights.shape(of: id, config: model.config)!
        var rng = SplitMix64(seed: seed)
        func random(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextUnit() - 0.5) * 0.1 })
        }
        return lowRank
            ? .init(id, .lowRank(left: random([shape[0], 2]), right: random([2, shape[1]])))
            : .init(id, .dense(random(shape)))
    }
}
