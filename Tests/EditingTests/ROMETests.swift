import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

@Suite struct ROMETests {
    func hyperparameters(_ model: LanguageModel) -> ROME.Hyperparameters {
        var h = ROME.Hyperparameters.defaults(layerCount: model.config.layerCount)
        h.layer = 0
        h.contextTemplates = [[4, 2]]
        return h
    }

    /// The r-ROME update is rank one and makes the edited layer map the averaged key k̄
    /// exactly to the optimised value v*.
    @Test func romeUpdateIsRankOneAndExactForTheAveragedKey() throws {
        let model = try TestModels.tinyLlama()
        var h = hyperparameters(model)
        h.mom2Adjustment = false
        let editor = ROME(hyperparameters: h)
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let templates = try ContextTemplates.generate(model, lengths: [(4, 2)], seed: 1)
        #expect(templates.count == 3 && templates[0] == "{}" && templates.dropFirst().allSatisfy { $0.hasSuffix(". {}") })
        let (entry, key, value) = try editor.update(request, model: model, templates: templates)
        guard case .lowRank(let left, let right) = entry.update else {
            Issue.record("ROME's update should be low-rank")
            return
        }
        #expect(left.shape == [model.config.hiddenSize, 1] && right.shape == [1, model.config.feedForwardSize])
        let applied = try model.transformer.apply(WeightDelta(entries: [entry]))
        defer { applied.revert() }
        let w = model.transformer.weights.blocks[0].feedForwardDown
        var mapped = [Float](repeating: 0, count: model.config.hiddenSize)
        w.matrixVector(rows: 0..<w.rows, key, into: &mapped)
        for (a, b) in zip(mapped, value) { #expect(abs(a - b) <= 1e-3 * max(1, abs(b))) }
    }

    /// On the default model ROME makes the new target the answer.
    @Test(.enabled(if: TestModels.hasDefaultModel))
    func romeEditsTheDefaultModel() throws {
        let model = try TestModels.defaultModel()
        var h = ROME.Hyperparameters.defaults(layerCount: 30)
        h.mom2Adjustment = false
        h.contextTemplates = [[5, 3]]
        let request = try EditRequest(prompt: "{} is located in the city of", subject: "The Eiffel Tower", targetNew: "Rome")
            .prepared(for: model)
        let applied = try model.transformer.apply(try ROME(hyperparameters: h).edit([request], in: model))
        defer { applied.revert() }
        let after = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0]
        #expect(after.tokenAccuracy == 1 && exp(after.totalLogProb) > 0.5, "P(Rome) = \(exp(after.totalLogProb))")
    }

    @Test func secondMomentIsRequiredWhenMom2AdjustmentIsOn() throws {
        let model = try TestModels.tinyLlama()
        let editor = ROME(hyperparameters: hyperparameters(model))
        #expect(throws: EditorError.self) {
            try editor.edit([EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "Rome")], in: model)
        }
        // With C = 2·I the direction of u is k*'s, as with the adjustment off.
        let f = model.config.feedForwardSize
        let twice = Tensor(shape: [f, f], values: (0..<(f * f)).map { $0 % (f + 1) == 0 ? 2 : 0 })
        let x = try SecondMomentSource { _ in twice }.factor(layer: 0).solve([Double](repeating: 1, count: f), count: 1)
        #expect(x.allSatisfy { abs($0 - 0.5) < 1e-4 })
    }
}
