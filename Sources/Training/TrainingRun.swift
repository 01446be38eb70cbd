import Editing
import Evaluation
import Foundation
import ModelFormats
import Models
import TensorCore

/// A whole training run around a ``HypernetworkTrainer``: the step loop with periodic
/// validation, the best editor so far at ``output``, a checkpoint to resume from, the loss
/// curves as CSV and an HTML chart, and early stopping (IBKE.md §4.5).
///
/// Files, next to `output` (`editor.ibke`):
/// - `editor.ibke`: the editor with the best validation score (written atomically);
/// - `editor.ibke.checkpoint/`: the latest editor, optimiser moments and loop state;
/// - `editor.ibke.steps.csv`, `editor.ibke.validation.csv`: one row per step / validation;
/// - `editor.ibke.training.html`: the curves drawn.
public final class TrainingRun {
    public enum Event {
        case step(HypernetworkTrainer.StepReport)
        case validation(step: Int, HypernetworkTrainer.Validation, best: Bool)
        case stoppedEarly(step: Int, bestStep: Int)
    }

    public let trainer: HypernetworkTrainer
    public let output: URL
    /// Recorded in the editor file (`ibke.training.*` keys): data, seed, revision, command.
    public var provenance: [String: String]

    private var stepRows: [String] = []
    private var validations: [(step: Int, result: HypernetworkTrainer.Validation)] = []
    private var best: (score: Double, step: Int)?
    private var stale = 0
    /// Wall time of the earlier parts of a resumed run.
    private var secondsBefore = 0.0

    public init(trainer: HypernetworkTrainer, output: URL, provenance: [String: String]) {
        self.trainer = trainer
        self.output = output
        self.provenance = provenance
    }

    public var checkpointDirectory: URL { URL(fileURLWithPath: output.path + ".checkpoint") }
    public var stepsCSV: URL { URL(fileURLWithPath: output.path + ".steps.csv") }
    public var validationCSV: URL { URL(fileURLWithPath: output.path + ".validation.csv") }
    public var chartHTML: URL { URL(fileURLWithPath: output.path + ".training.html") }

    static let stepHeader = "step,loss,reliability_nll,generality_nll,locality_kl,latent_kl,beta,pre_edit_nll,gradient_norm,skipped"
    static let validationHeader = "step,reliability,generality,locality,score"

    /// What a finished run reports.
    public struct Summary: Sendable {
        public var steps: Int
        public var bestStep: Int
        public var best: HypernetworkTrainer.Validation
        public var seconds: Double
        public var stoppedEarly: Bool
    }

    /// Runs until the step budget is spent or validation stops improving (or, with `stopAt`,
    /// until that step: an interrupted run, which ``resume()`` continues).
    public func run(stopAt: Int? = nil, progress: (Event) -> Void) throws -> Summary {
        let settings = trainer.settings
        let start = Date()
        var stoppedEarly = false
        if validations.isEmpty && trainer.step == 0 {
            try validate(progress: progress)  // the untrained editor's score, the baseline
        }
        while trainer.step < min(settings.steps, stopAt ?? .max) {
            let report = try trainer.trainStep()
            stepRows.append(Self.row(report))
            progress(.step(report))
            if trainer.step % settings.validateEvery == 0 || trainer.step == settings.steps {
                let improved = try validate(progress: progress)
                stale = improved ? 0 : stale + 1
                try saveCheckpoint(seconds: secondsBefore + Date().timeIntervalSince(start))
                if settings.patience > 0 && stale >= settings.patience {
                    stoppedEarly = true
                    progress(.stoppedEarly(step: trainer.step, bestStep: best?.step ?? 0))
                    break
                }
            }
        }
        let seconds = secondsBefore + Date().timeIntervalSince(start)
        let bestValidation = validations.first { $0.step == best?.step }?.result ?? validations.last!.result
        return Summary(
            steps: trainer.step, bestStep: best?.step ?? 0, best: bestValidation, seconds: seconds,
            stoppedEarly: stoppedEarly)
    }

    /// Validates; saves the editor to ``output`` when the score is the best so far.
    @discardableResult
    private func validate(progress: (Event) -> Void) throws -> Bool {
        let result = try trainer.validate()
        validations.append((trainer.step, result))
        let improved = best.map { result.score > $0.score } ?? true
        if improved {
            best = (result.score, trainer.step)
            var metadata = provenance
            metadata["ibke.training.settings"] = trainer.settings.json.serialized(indent: 0)
            metadata["ibke.training.best_step"] = String(trainer.step)
            metadata["ibke.training.validation"] = String(
                format: "reliability %.4f, generality %.4f, locality %.4f",
                result.reliability, result.generality, result.locality)
            trainer.editor.provenance = metadata
            try trainer.editor.save(to: output)
        }
        progress(.validation(step: trainer.step, result, best: improved))
        try writeCurves()
        return improved
    }

    private static func row(_ r: HypernetworkTrainer.StepReport) -> String {
        [
            String(r.step), f(r.loss), f(r.reliabilityNLL), f(r.generalityNLL), f(r.localityKL), f(r.latentKL), f(r.beta),
            f(r.preEditNLL), f(r.gradientNorm), r.skipped ? "1" : "0",
        ].joined(separator: ",")
    }

    private static func f(_ x: Double) -> String { String(format: "%.6g", x) }

    // MARK: Curves

    private func writeCurves() throws {
        let failure = { (reason: String) in TrainingError.writeFailed(reason) }
        try AtomicFile.write(Data(([Self.stepHeader] + stepRows).joined(separator: "\n").utf8 + [10]), to: stepsCSV, failure: failure)
        let validationRows = validations.map { v in
            [
                String(v.step), Self.f(v.result.reliability), Self.f(v.result.generality), Self.f(v.result.locality),
                Self.f(v.result.score),
            ].joined(separator: ",")
        }
        try AtomicFile.write(
            Data(([Self.validationHeader] + validationRows).joined(separator: "\n").utf8 + [10]),
            to: validationCSV, failure: failure)
        try AtomicFile.write(Data(chart().utf8), to: chartHTML, failure: failure)
    }

    /// Training losses (averaged over windows of steps) and validation accuracies.
    func chart() -> String {
        let columns = stepRows.map { $0.split(separator: ",").map { Double($0) ?? 0 } }
        let window = max(1, columns.count / 200)
        func smoothed(_ index: Int) -> [(x: Double, y: Double)] {
            stride(from: 0, to: columns.count, by: window).map { start in
                let chunk = columns[start..<min(columns.count, start + window)]
                return (chunk.last![0] + 1, chunk.reduce(0) { $0 + $1[index] } / Double(chunk.count))
            }
        }
        let losses = CurveChart(
            series: [
                .init(label: "reliability NLL", points: smoothed(2), colour: 0),
                .init(label: "generality NLL", points: smoothed(3), colour: 1),
                .init(label: "locality KL ×10", points: smoothed(4).map { ($0.x, $0.y * 10) }, colour: 2),
                .init(label: "latent KL per row ÷10", points: smoothed(5).map { ($0.x, $0.y / 10) }, colour: 3),
            ], xLabel: "training steps", xUnit: "steps", minimumTop: 1,
            title: "Training losses (means over \(window) step\(window == 1 ? "" : "s"))")
        let accuracy = CurveChart(
            series: [
                .init(label: "reliability", points: validations.map { (Double($0.step), $0.result.reliability * 100) }, colour: 0),
                .init(label: "generality", points: validations.map { (Double($0.step), $0.result.generality * 100) }, colour: 1),
                .init(label: "locality", points: validations.map { (Double($0.step), $0.result.locality * 100) }, colour: 2),
            ], xLabel: "training steps", xUnit: "steps", title: "Validation token accuracy ×100")
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>\(output.lastPathComponent): training</title>
            <style>body{font-family:system-ui,sans-serif;max-width:700px;margin:2em auto;color:#222}</style></head><body>
            <h1>\(output.lastPathComponent)</h1>
            <p>\(trainer.editor.name), \(trainer.step) steps; best validation at step \(best?.step ?? 0).</p>
            \(losses.svg())
            \(accuracy.svg())
            </body></html>
            """
    }

    // MARK: Checkpoints

    /// Saves the checkpoint; `seconds` is the run's wall time so far (resumed runs add theirs).
    private func saveCheckpoint(seconds: Double) throws {
        let directory = checkpointDirectory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try trainer.editor.save(to: directory.appendingPathComponent("editor.safetensors"))
        var tensors: [SafetensorsWriter.Entry] = []
        var steps: [String: String] = [:]
        for (label, optimizer) in [("network", trainer.networkOptimizer), ("step_size", trainer.stepSizeOptimizer)] {
            for i in optimizer.parameters.indices {
                guard let s = optimizer.state(of: i) else { continue }
                tensors.append(.init(name: "\(label)\(i).m", shape: [s.firstMoment.count], floats: s.firstMoment))
                tensors.append(.init(name: "\(label)\(i).v", shape: [s.secondMoment.count], floats: s.secondMoment))
                steps["\(label)\(i)"] = String(s.step)
            }
        }
        try SafetensorsWriter.write(tensors: tensors, metadata: steps, to: directory.appendingPathComponent("optimizer.safetensors"))
        var state: JSONObject = [
            "step": .int(trainer.step),
            "settings": trainer.settings.json,
            "editor_settings": trainer.editor.settings.json,
            "stale_validations": .int(stale),
            "seconds": .double(seconds),
            "validations": .array(
                validations.map {
                    .array([
                        .int($0.step), .double($0.result.reliability),
                        .double($0.result.generality), .double($0.result.locality),
                    ])
                }),
        ]
        state.updateValue(trainer.lastAcceptedLoss.map { .double($0) } ?? .null, forKey: "last_accepted_loss")
        state.updateValue(best.map { .int($0.step) } ?? .null, forKey: "best_step")
        try AtomicFile.write(
            Data(JSONValue.object(state).serialized(indent: 2).utf8), to: directory.appendingPathComponent("state.json"),
            failure: { TrainingError.writeFailed($0) })
    }

    /// The editor saved in `output`'s checkpoint, to build the trainer of a resumed run.
    public static func checkpointEditor(for output: URL, model: LanguageModel) throws -> HypernetworkEditor {
        let url = URL(fileURLWithPath: output.path + ".checkpoint").appendingPathComponent("editor.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TrainingError.noCheckpoint(url.deletingLastPathComponent().path)
        }
        return try HypernetworkEditor.load(from: url, for: model)
    }

    /// Whether a run saved with `saved` settings at `step` continues under `settings`: the same
    /// ones, or a larger step budget once β's warm-up (a fraction of the budget) is over under
    /// both budgets, so the steps already taken are the ones the longer run would have taken.
    static func canContinue(saved: JSONValue?, at step: Int, with settings: TrainingSettings) -> Bool {
        guard case .object(var object)? = saved, let savedSteps = object["steps"]?.intValue else { return false }
        if savedSteps == settings.steps { return saved == settings.json }
        object.updateValue(.int(settings.steps), forKey: "steps")
        let warmupOver = settings.betaWarmup * Double(max(savedSteps, settings.steps)) <= Double(step)
        return settings.steps > savedSteps && warmupOver && JSONValue.object(object) == settings.json
    }

    /// Restores the loop state and optimiser moments of the checkpoint (after building the
    /// trainer from ``checkpointEditor(for:model:)``), refusing one made with other settings.
    public func resume() throws {
        let directory = checkpointDirectory
        let stateURL = directory.appendingPathComponent("state.json")
        guard let data = try? Data(contentsOf: stateURL), let state = (try? JSONValue.parse(data))?.objectValue,
            let step = state["step"]?.intValue
        else { throw TrainingError.noCheckpoint(directory.path) }
        guard Self.canContinue(saved: state["settings"], at: step, with: trainer.settings),
            state["editor_settings"] == trainer.editor.settings.json
        else { throw TrainingError.settingsChanged(stateURL.path) }
        let optimizer = try SafetensorsFile(url: directory.appendingPathComponent("optimizer.safetensors"))
        for (label, adam) in [("network", trainer.networkOptimizer), ("step_size", trainer.stepSizeOptimizer)] {
            for i in adam.parameters.indices {
                guard let s = optimizer.metadata["\(label)\(i)"].flatMap(Int.init) else { continue }
                adam.restoreState(
                    of: i, firstMoment: try optimizer.readFloats("\(label)\(i).m"),
                    secondMoment: try optimizer.readFloats("\(label)\(i).v"), step: s)
            }
        }
        trainer.step = step
        trainer.lastAcceptedLoss = state["last_accepted_loss"]?.doubleValue
        stale = state["stale_validations"]?.intValue ?? 0
        secondsBefore = state["seconds"]?.doubleValue ?? 0
        validations = (state["validations"]?.arrayValue ?? []).compactMap { v in
            guard let a = v.arrayValue, a.count == 4, let s = a[0].intValue, let r = a[1].doubleValue,
                let g = a[2].doubleValue, let l = a[3].doubleValue
            else { return nil }
            return (s, HypernetworkTrainer.Validation(reliability: r, generality: g, locality: l))
        }
        if let bestStep = state["best_step"]?.intValue, let v = validations.first(where: { $0.step == bestStep }) {
            best = (v.result.score, bestStep)
        }
        if let text = try? String(contentsOf: stepsCSV, encoding: .utf8) {
            stepRows = text.split(separator: "\n").dropFirst().map(String.init).filter { row in
                (Int(row.prefix { $0 != "," }) ?? .max) < step
            }
        }
    }
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case writeFailed(String)
    case noCheckpoint(String)
    case settingsChanged(String)

    public var description: String {
        switch self {
        case .writeFailed(let reason): "writing training output failed: \(reason)"
        case .noCheckpoint(let path): "\(path): no checkpoint to resume from"
        case .settingsChanged(let path):
            "\(path): the checkpoint was made with other settings; resume with the same ones, or start a new run"
        }
    }
}
