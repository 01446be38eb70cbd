import Foundation
import ModelFormats
import Models
import TensorCore
import Testing

@testable import Editing

@Suite struct ValueStepTests {
    /// The network's backward pass gives the gradient of `aᵀδ_K + β·KL` with the reads held
    /// fixed, checked by central differences on every parameter kind. The weight of the δ
    /// feature is zero, so that holding the reads fixed is exact (later steps' δ feature is
    /// the only path from one step to the next).
    @Test func backwardMatchesFiniteDifferences() throws {
        let width = 6
        let network = ValueStepNetwork(settings: .init(reads: 3, hidden: 4, latent: 2), width: width, seed: 5)
        let f = ValueStepNetwork.featureCount
        let w1 = network.bank["w1"]
        for j in 0..<network.settings.hidden { w1.pointer[j * f + 2] = 0 }
        var rng = SplitMix64(seed: 9)
        func random() -> [Float] { (0..<width).map { _ in Float(rng.nextUnit() - 0.5) * 2 } }
        let reads = (0..<3).map { _ in random() }
        let losses: [Float] = [4, 2.5, 1]
        let initial = random()
        let a = random()
        let beta: Float = 0.3
        func loss() throws -> (value: Float, trajectory: ValueTrajectory) {
            let run = network.stepper(noise: SplitMix64(seed: 11))
            let delta = Tensor(zeros: [width])
            for k in 0..<3 {
                try run.read(request: 0, step: k, loss: losses[k], gradient: reads[k], delta: delta, initial: initial)
            }
            try run.read(request: 0, step: 3, loss: 0, gradient: reads[0], delta: delta, initial: initial)
            let t = run.trajectories[0]!
            let value = zip(a, t.delta).reduce(0) { $0 + $1.0 * $1.1 } + beta * ValueStepNetwork.divergence(t)
            return (value, t)
        }
        let (_, trajectory) = try loss()
        let gradient = network.bank.makeGradient()
        network.backward(trajectory, upstream: Array(repeating: a.map { -$0 }, count: 3), beta: beta, into: gradient)
        for slot in network.bank.slots {
            let values = network.bank[slot.name]
            let analytic = network.bank.view(slot.name, in: gradient)
            for i in Set([0, slot.count / 2, slot.count - 1]) {
                let saved = values.pointer[i]
                let h: Float = 1e-2
                values.pointer[i] = saved + h
                let plus = try loss().value
                values.pointer[i] = saved - h
                let minus = try loss().value
                values.pointer[i] = saved
                let numeric = (plus - minus) / (2 * h)
                let exact = analytic.pointer[i]
                #expect(abs(numeric - exact) <= 2e-3 + 2e-2 * abs(exact), "\(slot.name)[\(i)]: \(numeric) vs \(exact)")
            }
        }
    }

    /// On the tiny model: a few training steps on one request lower its value loss; the editor
    /// file round-trips, edits through MEMIT's write (raising the target) and leaves the model
    /// as it found it; a file for another model or with a damaged tensor is refused.
    @Test func trainsSavesLoadsAndEdits() throws {
        let model = try TestModels.tinyLlama()
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let paraphrase = try EditRequest(prompt: "Where does {} live? In", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let objective = try ValueStepObjective(model: model)
        let network = ValueStepNetwork(settings: .init(reads: 2, hidden: 8, latent: 2), width: model.config.hiddenSize, seed: 1)
        let before = try objective.run(network, request: request, paraphrase: paraphrase)
        #expect(before.finalLoss < before.initialLoss)
        let adam = Adam(parameters: [network.bank.values], learningRate: 0.02)
        for _ in 0..<15 {
            let gradient = network.bank.makeGradient()
            _ = try objective.run(network, request: request, paraphrase: paraphrase, gradient: gradient)
            adam.step(gradients: [gradient])
        }
        let after = try objective.run(network, request: request, paraphrase: paraphrase)
        #expect(after.finalLoss < before.finalLoss, "\(after.finalLoss) vs \(before.finalLoss)")

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("value-steps-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("ibke.safetensors")
        try ValueStepEditor.save(network, provenance: ["ibke.training.data": "test"], to: file, model: model)
        #expect(try ValueStepEditor.isEditorFile(file))
        let c = MassEditingTests.secondMoment(model.config.feedForwardSize, seed: 8)
        let loaded = try ValueStepEditor.load(from: file, for: model, statistics: SecondMomentSource { _ in c })
        // Loaded, Adam continues up to MEMIT's 25 steps in all; the learned reads alone first.
        #expect(loaded.continueSteps == 25 - 2)
        let editor = loaded.continuing(0)
        #expect(editor.network.bank.values.scalars == network.bank.values.scalars)
        #expect(editor.provenance["ibke.training.data"] == "test")
        let weights = model.transformer.weights.blocks[0].feedForwardDown.scalars
        let continuation = ContinuationRequest(prompt: request.prompt, target: request.target)
        let unedited = try model.score([continuation])[0].totalLogProb
        let delta = try editor.edit([request], in: model)
        #expect(model.transformer.weights.blocks[0].feedForwardDown.scalars == weights)
        #expect(delta.parameters == [ParameterID(layer: 0, .feedForwardDown)])
        let applied = try model.transformer.apply(delta)
        let learned = try model.score([continuation])[0].totalLogProb
        #expect(learned > unedited)
        applied.revert()
        // Adam continuing from the learned steps writes the target further, and says so.
        let continuing = editor.continuing(20)
        #expect(continuing.hyperparameters.objectValue?["continue_steps"] == .int(20))
        #expect(editor.hyperparameters.objectValue?["continue_steps"] == nil)
        let further = try model.transformer.apply(try continuing.edit([request], in: model))
        let continued = try model.score([continuation])[0].totalLogProb
        #expect(continued > learned)
        further.revert()
        // A hyperparameter file sets MEMIT's value keys too: a stricter loss threshold lets Adam
        // write at least as far; an unknown key is refused.
        var reader = HyperparameterReader(object: ["continue_steps": .int(20), "v_loss_threshold": .double(1e-4)], file: "h.yaml")
        let stricter = try editor.overriding(&reader)
        #expect(stricter.hyperparameters.objectValue?["v_loss_threshold"] == .double(1e-4))
        let strict = try model.transformer.apply(try stricter.edit([request], in: model))
        #expect(try model.score([continuation])[0].totalLogProb >= continued)
        strict.revert()
        var unknown = HyperparameterReader(object: ["continue_step": .int(20)], file: "h.yaml")
        #expect(throws: EditorError.self) { _ = try editor.overriding(&unknown) }
        #expect(model.transformer.weights.blocks[0].feedForwardDown.scalars == weights)

        let other = try LanguageModel.load(TestModels.fixtures.appendingPathComponent("tiny-gemma3"))
        #expect(throws: HypernetworkError.self) {
            _ = try ValueStepEditor.load(from: file, for: other, statistics: SecondMomentSource { _ in c })
        }
        network.bank["w2"].pointer[0] = .nan
        try ValueStepEditor.save(network, provenance: [:], to: file, model: model)
        #expect(throws: HypernetworkError.self) {
            _ = try ValueStepEditor.load(from: file, for: model, statistics: SecondMomentSource { _ in c })
        }
    }
}
