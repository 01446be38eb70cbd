import Editing
import Evaluation
import Foundation
import Models
import TensorCore
import Testing

@testable import Training

/// Meta-training on the tiny Llama: the loss goes down, and a resumed run continues exactly
/// where an uninterrupted one would be.
@Suite struct TrainingTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")

    static func model() throws -> LanguageModel { try LanguageModel.load(fixtures.appendingPathComponent("tiny-llama")) }

    static func samples(_ model: LanguageModel) throws -> [TrainingSample] {
        let facts = [("Alice", "Paris"), ("Bob", "the old mill"), ("Carol", "Rome"), ("Dan", "a small town")]
        return try facts.enumerated().map { i, fact in
            let evalCase = EvalCase(
                id: String(i), kind: .zsre,
                requests: [EditRequest(prompt: "{} lives in", subject: fact.0, targetNew: fact.1)],
                probes: [
                    Probe(role: .generality, prompt: "\(fact.0) resides in", target: fact.1),
                    Probe(role: .locality, prompt: "The sky is", target: "blue and wide"),
                ])
            return try #require(
                try TrainingSample.make(
                    evalCase, model: model, corpusSentence: "Rivers flow into the sea every day.",
                    corpusTokens: 8))
        }
    }

    static func editor(_ design: HypernetworkSettings.Design, _ model: LanguageModel) throws -> HypernetworkEditor {
        var s = HypernetworkSettings.defaults(design, config: model.config)
        s.layers = [1]
        s.rank = 16
        s.latentSize = 8
        return try HypernetworkEditor(name: design == .mend ? "mend" : "ibke", settings: s, model: model)
    }

    static func settings(steps: Int) -> TrainingSettings {
        var t = TrainingSettings.defaults(.bottleneck)
        t.learningRate = 1e-3
        t.stepSizeLearningRate = 1e-2
        t.steps = steps
        t.validateEvery = 3
        t.patience = 0
        return t
    }

    @Test(arguments: HypernetworkSettings.Design.allCases)
    func trainingLowersTheEditLoss(design: HypernetworkSettings.Design) throws {
        let model = try Self.model()
        let samples = try Self.samples(model)
        let trainer = HypernetworkTrainer(
            model: model, editor: try Self.editor(design, model), settings: Self.settings(steps: 80),
            training: samples, validation: samples)
        let weights = model.transformer.weights.blocks[1].feedForwardDown.scalars
        let reports = try (0..<80).map { _ in try trainer.trainStep() }
        #expect(reports.allSatisfy { $0.loss.isFinite && !$0.skipped })
        let first = reports.prefix(8).map(\.reliabilityNLL).reduce(0, +) / 8
        let last = reports.suffix(8).map(\.reliabilityNLL).reduce(0, +) / 8
        #expect(last < 0.65 * first, "reliability NLL \(first) → \(last)")
        #expect(model.transformer.weights.blocks[1].feedForwardDown.scalars == weights, "training must not change the model")
        let validation = try trainer.validate()
        #expect(validation.reliability > 0.5, "\(validation)")
    }

    /// The unlikelihood term's gradient against central differences on the logits.
    @Test func unlikelihoodGradientMatchesFiniteDifferences() {
        let v = 7
        let rows = 2
        var logits: [Float] = (0..<(rows * v)).map { Float(($0 * 37) % 11) / 4 - 1 }
        let targets = [3, 5]
        let weights: [Float] = [0.7, 0.3]
        var analytic = [Float](repeating: 0, count: rows * v)
        let loss = { (z: [Float]) -> Double in
            var scratch = [Float](repeating: 0, count: rows * v)
            return HypernetworkTrainer.unlikelihood(
                z, rows: rows, vocabularySize: v, targets: targets, weights: weights,
                scale: 1, dLogits: &scratch)
        }
        _ = HypernetworkTrainer.unlikelihood(
            logits, rows: rows, vocabularySize: v, targets: targets, weights: weights,
            scale: 1, dLogits: &analytic)
        #expect(loss(logits) > 0)
        for i in 0..<(rows * v) {
            let saved = logits[i]
            let h: Float = 1e-2
            logits[i] = saved + h
            let up = loss(logits)
            logits[i] = saved - h
            let down = loss(logits)
            logits[i] = saved
            let numeric = (up - down) / Double(2 * h)
            #expect(abs(numeric - Double(analytic[i])) < 1e-3, "logit \(i): numeric \(numeric), analytic \(analytic[i])")
        }
    }

    /// Hard negatives: neighbourhood prompts are marked, weighted in the locality mean, and
    /// paired with the edit's new object for the unlikelihood term; training with both runs.
    @Test func neighbourhoodPromptsAreHardNegatives() throws {
        let model = try Self.model()
        let evalCase = EvalCase(
            id: "n", kind: .counterfact,
            requests: [EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "Paris")],
            probes: [
                Probe(role: .paraphrase, prompt: "Alice resides in", target: "Paris"),
                Probe(role: .neighborhood, prompt: "Bob lives in", target: "Paris", alternative: "Rome"),
                Probe(role: .locality, prompt: "The sky is", target: "blue"),
            ])
        let sample = try #require(try TrainingSample.make(evalCase, model: model, corpusSentence: nil, corpusTokens: 0))
        #expect(sample.neighbourhood == [true, false])
        #expect(sample.neighbourTargets.map(\.target) == [sample.edit.target])
        #expect(sample.sequences(negatives: true).count == 1 + 1 + 2 + 1)
        #expect(sample.sequences(negatives: false).count == 1 + 1 + 2)
        var settings = Self.settings(steps: 6)
        settings.neighbourhoodWeight = 5
        settings.unlikelihoodWeight = 1
        let trainer = HypernetworkTrainer(
            model: model, editor: try Self.editor(.gatedMEND, model), settings: settings,
            training: [sample], validation: [sample])
        let reports = try (0..<6).map { _ in try trainer.trainStep() }
        #expect(reports.allSatisfy { $0.loss.isFinite })
        _ = try trainer.validate()
    }

    @Test func resumedRunMatchesAnUninterruptedOne() throws {
        let model = try Self.model()
        let samples = try Self.samples(model)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }

        let whole = HypernetworkTrainer(
            model: model, editor: try Self.editor(.bottleneck, model), settings: Self.settings(steps: 6),
            training: samples, validation: samples)
        _ = try TrainingRun(trainer: whole, output: folder.appendingPathComponent("whole.safetensors"), provenance: [:])
            .run { _ in }

        let output = folder.appendingPathComponent("split.safetensors")
        let first = HypernetworkTrainer(
            model: model, editor: try Self.editor(.bottleneck, model), settings: Self.settings(steps: 6),
            training: samples, validation: samples)
        _ = try TrainingRun(trainer: first, output: output, provenance: [:]).run(stopAt: 3) { _ in }
        let second = HypernetworkTrainer(
            model: model, editor: try TrainingRun.checkpointEditor(for: output, model: model),
            settings: Self.settings(steps: 6), training: samples, validation: samples)
        let resumed = TrainingRun(trainer: second, output: output, provenance: [:])
        try resumed.resume()
        #expect(second.step == 3)
        let summary = try resumed.run { _ in }
        #expect(summary.steps == 6)
        for (a, b) in zip(whole.editor.parameterBanks, second.editor.parameterBanks) {
            #expect(a.values.scalars == b.values.scalars)
        }
        #expect(whole.editor.stepSizes.scalars == second.editor.stepSizes.scalars)
        let rows = try String(contentsOf: resumed.stepsCSV, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 7 && rows[0].hasPrefix("step,loss"), "\(rows)")
        #expect(FileManager.default.fileExists(atPath: resumed.chartHTML.path))

        // Other settings: refused.
        var other = Self.settings(steps: 6)
        other.beta = 0.5
        let mismatched = TrainingRun(
            trainer: HypernetworkTrainer(
                model: model, editor: try Self.editor(.bottleneck, model), settings: other,
                training: samples, validation: samples),
            output: output, provenance: [:])
        #expect(throws: TrainingError.self) { try mismatched.resume() }
    }

    @Test func aLongerBudgetContinuesOnlyAfterTheWarmUp() {
        var settings = Self.settings(steps: 100)
        settings.betaWarmup = 0.1
        let saved = settings.json
        var longer = settings
        longer.steps = 200
        #expect(TrainingRun.canContinue(saved: saved, at: 100, with: settings))
        #expect(TrainingRun.canContinue(saved: saved, at: 100, with: longer))
        #expect(!TrainingRun.canContinue(saved: saved, at: 10, with: longer))  // β still warming up under 200
        var shorter = settings
        shorter.steps = 50
        #expect(!TrainingRun.canContinue(saved: saved, at: 100, with: shorter))
        longer.beta *= 2
        #expect(!TrainingRun.canContinue(saved: saved, at: 100, with: longer))
    }

    /// `prompt_variants` reaches the value loss the reads are trained on, is recorded only when
    /// set (earlier checkpoints keep resuming), and is range-checked.
    @Test func valueStepTrainingReadsRewordings() throws {
        var reader = HyperparameterReader(object: ["design": .string("value_steps"), "prompt_variants": .int(4)], file: "--set")
        let settings = try ValueStepTrainingSettings(reading: &reader)
        #expect(settings.promptVariants == 4)
        #expect(settings.json.objectValue?["prompt_variants"] == .int(4))
        #expect(ValueStepTrainingSettings().json.objectValue?["prompt_variants"] == nil)
        var tooMany = HyperparameterReader(object: ["prompt_variants": .int(17)], file: "--set")
        #expect(throws: (any Error).self) { _ = try ValueStepTrainingSettings(reading: &tooMany) }
        let trainer = try ValueStepTrainer(model: try Self.model(), settings: settings, training: [], validation: [])
        #expect(trainer.objective.hyperparameters.optimization.promptVariants == 4)
    }
}
