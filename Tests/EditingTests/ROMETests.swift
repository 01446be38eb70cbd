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

    /// The r-ROME update makes the edited layer map the averaged key k̄ exactly to v*, is
    /// rank one, and raises the target.
    @Test func romeWritesTheFactWithARankOneUpdate() throws {
        let model = try TestModels.tinyLlama()
        var h = hyperparameters(model)
        h.mom2Adjustment = false
        let editor = ROME(hyperparameters: h)
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let before = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0].meanLogProb
        let delta = try editor.edit([request], in: model)
        guard case .lowRank(let left, let right) = try #require(delta.entries.first).update else {
            Issue.record("ROME's update should be low-rank"); return
        }
        #expect(left.shape == [model.config.hiddenSize, 1] && right.shape == [1, model.config.feedForwardSize])
        let applied = try model.transformer.apply(delta)
        let after = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0].meanLogProb
        applied.revert()
        #expect(after > before + 0.5, "log p \(before) → \(after)")
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
        let x = try ROME.solve(twice, [Float](repeating: 1, count: f))
        #expect(x.allSatisfy { abs($0 - 0.5) < 1e-4 })
    }
}
