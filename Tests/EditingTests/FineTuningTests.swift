import Foundation
import Models
import Testing

@testable import Editing

@Suite struct FineTuningTests {
    func targetLogProb(_ model: LanguageModel, _ r: PreparedRequest) throws -> Float {
        try model.score([ContinuationRequest(prompt: r.prompt, target: r.target)])[0].meanLogProb
    }

    @Test(arguments: [FineTuning.Objective.targetNew, .promptLast])
    func fineTuningRaisesTheTargetAndLeavesTheModelUnchanged(objective: FineTuning.Objective) throws {
        let model = try TestModels.tinyLlama()
        var h = FineTuning.Hyperparameters.defaults(objective, layerCount: model.config.layerCount)
        h.learningRate = 1e-2
        h.normConstraint = objective == .promptLast ? 5e-2 : nil
        let editor = FineTuning(name: "ft", hyperparameters: h)
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let before = try targetLogProb(model, request)
        let w0 = model.transformer.weights.blocks[h.layers[0]].feedForwardDown.scalars

        let delta = try editor.edit([request], in: model)
        #expect(model.transformer.weights.blocks[h.layers[0]].feedForwardDown.scalars == w0, "edit must not change the model")
        #expect(delta.parameters == [ParameterID(layer: h.layers[0], .feedForwardDown)])
        #expect(delta.metadata["ibke.method"] == "ft")
        if let bound = h.normConstraint {
            let d = delta.entries[0].update.materialized()
            #expect(d.scalars.allSatisfy { abs($0) <= Float(bound) * (1 + 1e-6) })
        }
        let applied = try model.transformer.apply(delta)
        let after = try targetLogProb(model, request)
        applied.revert()
        #expect(after > before + 0.5, "log p(target) \(before) → \(after)")
        #expect(try targetLogProb(model, request) == before)
    }

    /// The real thing: FT-M with the default hyperparameters on the default model makes the
    /// new target the greedy answer.
    @Test(.enabled(if: TestModels.hasDefaultModel))
    func ftMEditsTheDefaultModel() throws {
        let model = try TestModels.defaultModel()
        let editor = try FineTuning.make(.targetNew, config: model.config)
        let request = try EditRequest(
            prompt: "The Eiffel Tower is located in the city of", subject: "The Eiffel Tower",
            targetNew: "Rome"
        ).prepared(for: model)
        let before = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0]
        let applied = try model.transformer.apply(try editor.edit([request], in: model))
        defer { applied.revert() }
        let after = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0]
        #expect(before.tokenAccuracy < 1)
        #expect(after.tokenAccuracy == 1, "after FT-M: \(after.argmaxTokens) vs \(request.target)")
    }
}
