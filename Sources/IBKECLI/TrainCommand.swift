import ArgumentParser
import Editing
import Evaluation
import Foundation
import ModelFormats
import Models
import TensorCore
import Training

#if canImport(Glibc)
import Glibc
#endif

/// `ibke train`: meta-trains a MEND or IBKE editor for a model.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a hypernetwork editor (IBKE or MEND) for a model.",
        discussion: """
            Writes OUT (the editor with the best validation score), OUT.validation.csv and OUT.checkpoint/ \
            (to --resume from); the gradient hypernetworks (MEND, IBKE's other designs) also OUT.steps.csv and \
            OUT.training.html (the curves).
            Example: ibke train --method ibke --train counterfact:data/counterfact-train.json --val counterfact:data/counterfact-val.json --val-count 50 --out ibke.safetensors
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var statistics: StatisticsArguments
    @Option(
        help:
            "ibke (learned steps of the value MEMIT writes; --set design=bottleneck|gated|gated_mend: the gradient hypernetworks) or mend."
    )
    var method = "ibke"
    @Option(help: ArgumentHelp("Training data: KIND:PATH[,KIND:PATH…] with KIND zsre or counterfact (cf).", valueName: "kind:path,…"))
    var train: String
    @Option(
        help: ArgumentHelp(
            "Validation data (KIND:PATH); default: the last --val-count records of the first --train file, held out.",
            valueName: "kind:path"))
    var val: String?
    @Option(help: "Validation records.") var valCount = 100
    @Option(help: "Use only the first N training records (after holding out validation).") var limit: Int?
    @Option(
        help: ArgumentHelp(
            "Text for the corpus locality sample of each training record (IBKE.md §4.1); off when not given.",
            valueName: "path"))
    var localityCorpus: String?
    @Option(name: .customLong("hparams"), help: "Settings (JSON or YAML): editor architecture and training keys.") var hyperparameters:
        String?
    @Option(
        name: .customLong("set"),
        help: ArgumentHelp(
            "Override one setting (repeatable): beta=0.01, steps=5000, latent_size=64, …",
            valueName: "key=value"))
    var overrides: [String] = []
    @Option(help: "The editor file to write.") var out: String
    @Flag(
        help: "Continue from OUT.checkpoint/ with the same settings (the gradient hypernetworks: or a larger steps once β has warmed up).")
    var resume = false
    @Option(
        help: ArgumentHelp(
            "Start from the networks of a trained editor of the same architecture (fine-tuning, e.g. with --set neighbours=N).",
            valueName: "editor.safetensors"))
    var initial: String?
    @Option(
        help: ArgumentHelp(
            "Stop after this step (the gradient hypernetworks: a multiple of validate_every, validated), checkpointed so --resume continues.",
            valueName: "step"))
    var stopAt: Int?
    @Flag(help: "Store OUT's network weights in float16 at the end (half the file; the checkpoint stays float32).")
    var f16 = false

    func run() throws {
        guard let design = ["ibke": HypernetworkSettings.Design.bottleneck, "mend": .mend][method] else {
            throw CLIError("--method must be ibke or mend")
        }
        let loaded = try model.load()
        var base = JSONObject()
        if let hyperparameters {
            base = try HyperparameterReader(contentsOf: URL(fileURLWithPath: hyperparameters)).object
        }
        let object = try HyperparameterReader.overriding(base, with: overrides, file: hyperparameters ?? "--set")
        var reader = HyperparameterReader(object: object, file: hyperparameters ?? "--set")
        // IBKE's default design is the learned value steps; the gradient hypernetworks by name.
        if design == .bottleneck, object["design"] == nil || object["design"] == .string("value_steps") {
            return try trainValueSteps(loaded, reader: &reader)
        }
        let trainingSettings = try TrainingSettings(reading: &reader, design: design)
        if let stopAt, stopAt < 1 || stopAt % trainingSettings.validateEvery != 0 {
            throw CLIError("--stop-at \(stopAt): must be a positive multiple of validate_every (\(trainingSettings.validateEvery))")
        }
        let editorSettings = try HypernetworkSettings(reading: &reader, design: design, config: loaded.config)
        guard (editorSettings.design == .mend) == (design == .mend) else {
            throw CLIError("--method \(method) trains design \(design.rawValue); the settings say design \(editorSettings.design.rawValue)")
        }

        let (specs, trainingCases, validationCases) = try cases()
        let sentences = try localityCorpus.map { LocalitySentences(corpus: try TextCorpus(url: URL(fileURLWithPath: $0))) }
        let corpusTokens = trainingSettings.corpusLocalityTokens
        let training = try trainingCases.enumerated().compactMap { i, c in
            try TrainingSample.make(
                c, model: loaded, corpusSentence: sentences?.sentence(for: i, seed: trainingSettings.seed),
                corpusTokens: corpusTokens)
        }
        let validation = try validationCases.compactMap {
            try TrainingSample.make($0, model: loaded, corpusSentence: nil, corpusTokens: 0)
        }
        guard !training.isEmpty, !validation.isEmpty else {
            throw CLIError("--train/--val: no usable records (each needs a paraphrase and a locality prompt)")
        }

        let output = URL(fileURLWithPath: out)
        let name = design == .mend ? "mend" : "ibke"
        var keyMoments: [Int: Tensor] = [:]
        if editorSettings.write == .keyValue && !resume {
            // The key-value write's C, from the statistics ROME/MEMIT use; stored in the editor.
            let bar = ProgressBar()
            let moments = try statistics.secondMoments(for: loaded, bar: bar)
            moments.expect(layers: editorSettings.layers)
            try statistics.prepare(moments, bar: bar)
            bar.finish()
            for layer in editorSettings.layers { keyMoments[layer] = try moments.matrix(layer: layer) }
        }
        let editor: HypernetworkEditor
        if resume {
            editor = try TrainingRun.checkpointEditor(for: output, model: loaded)
        } else if let initial {
            editor = try HypernetworkEditor.load(from: URL(fileURLWithPath: initial), for: loaded)
            var started = editor.settings
            var wanted = editorSettings
            (started.neighbours, started.neighbourSubjects, started.neighbourRescale) = (0, [], 1)
            (wanted.neighbours, wanted.neighbourSubjects, wanted.neighbourRescale) = (0, [], 1)
            guard editor.name == name, started == wanted else {
                throw CLIError(
                    "--initial \(initial): its settings (\(editor.settings.json.serialized(indent: 0))) differ from these beyond the neighbour settings"
                )
            }
            var reader = HyperparameterReader(
                object: [
                    "neighbours": .int(editorSettings.neighbours),
                    "neighbour_subjects": .array(editorSettings.neighbourSubjects.map { .string($0) }),
                    "neighbour_rescale": .double(editorSettings.neighbourRescale),
                ],
                file: "--set")
            try editor.overrideEditSettings(&reader)
        } else {
            editor = try HypernetworkEditor(name: name, settings: editorSettings, model: loaded, keyMoments: keyMoments)
        }
        let trainer = HypernetworkTrainer(
            model: loaded, editor: editor, settings: trainingSettings,
            training: training, validation: validation)
        var provenance = Provenance.fields().reduce(into: [String: String]()) { $0["ibke.training.\($1.key)"] = $1.value }
        provenance["ibke.training.data"] =
            specs.map(\.description).joined(separator: ",")
            + (val == nil ? " (last \(valCount) of the first held out for validation)" : "")
        provenance["ibke.training.validation_data"] = val ?? "held out"
        provenance["ibke.training.records"] = String(training.count)
        provenance["ibke.training.locality_corpus"] = sentences?.label ?? "none"
        provenance["ibke.training.command"] = CommandLine.arguments.dropFirst().joined(separator: " ")
        if let initial { provenance["ibke.training.initial"] = URL(fileURLWithPath: initial).lastPathComponent }
        let run = TrainingRun(trainer: trainer, output: output, provenance: provenance)
        if resume { try run.resume() }
        log(
            "\(name): \(editor.parameterCount) parameters (\(String(format: "%.1f", Double(editor.parameterCount) * 4 / 1e6)) MB), "
                + "\(training.count) training and \(validation.count) validation records, \(trainingSettings.steps) steps"
                + (resume ? ", resuming at step \(trainer.step)" : ""))

        let bar = ProgressBar()
        let interactive = isatty(STDERR_FILENO) != 0
        var window: [HypernetworkTrainer.StepReport] = []
        let summary = try run.run(stopAt: stopAt) { event in
            switch event {
            case .step(let r):
                window.append(r)
                if window.count > 100 { window.removeFirst() }
                bar.update(phase: "training", done: r.step + 1, total: trainingSettings.steps)
                if !interactive && (r.step + 1) % 100 == 0 {
                    let mean = { (f: (HypernetworkTrainer.StepReport) -> Double) in window.map(f).reduce(0, +) / Double(window.count) }
                    log(
                        String(
                            format:
                                "step %d: loss %.4f, reliability NLL %.3f, generality NLL %.3f, locality KL %.4f, latent KL/row %.3f (β %.2g)",
                            r.step + 1, mean(\.loss), mean(\.reliabilityNLL), mean(\.generalityNLL), mean(\.localityKL),
                            mean(\.latentKL), r.beta))
                }
            case .validation(let step, let v, let best):
                bar.finish()
                log(
                    String(
                        format: "validation at step %d: reliability %.1f, generality %.1f, locality %.1f%@", step,
                        v.reliability * 100, v.generality * 100, v.locality * 100, best ? " (best so far: saved)" : ""))
            case .stoppedEarly(let step, let bestStep):
                log("stopping early at step \(step): no better validation since step \(bestStep)")
            }
        }
        bar.finish()
        if f16 { try HypernetworkEditor.load(from: output, for: loaded).save(to: output, halfPrecision: true) }
        log(
            String(
                format: "done: %d steps in %@; best at step %d: reliability %.1f, generality %.1f, locality %.1f; wrote %@",
                summary.steps, ProgressBar.duration(summary.seconds), summary.bestStep, summary.best.reliability * 100,
                summary.best.generality * 100, summary.best.locality * 100, out))
    }
    /// The training records and the validation records (held out of the first --train file,
    /// or from --val), with the training specs.
    func cases() throws -> (specs: [DatasetSpec], training: [EvalCase], validation: [EvalCase]) {
        let specs = try train.split(separator: ",").map { try DatasetSpec(parsing: String($0)) }
        guard !specs.isEmpty, specs.allSatisfy({ [.zsre, .counterfact].contains($0.kind) }) else {
            throw CLIError("--train: one or more zsre:PATH or counterfact:PATH")
        }
        var trainingCases: [EvalCase] = []
        var validationCases: [EvalCase] = []
        for (i, spec) in specs.enumerated() {
            var cases = try Dataset.load(spec).cases
            if i == 0 && val == nil {
                guard cases.count > valCount else {
                    throw CLIError("--train \(spec): \(cases.count) records, not more than --val-count \(valCount)")
                }
                validationCases = Array(cases.suffix(valCount))
                cases.removeLast(valCount)
            }
            trainingCases += cases
        }
        if let val { validationCases = Array(try Dataset.load(try DatasetSpec(parsing: val)).cases.prefix(valCount)) }
        if let limit { trainingCases = Array(trainingCases.prefix(limit)) }
        return (specs, trainingCases, validationCases)
    }

    /// `--set design=value_steps`: IBKE's learned value steps (``ValueStepTrainer``).
    func trainValueSteps(_ loaded: LanguageModel, reader: inout HyperparameterReader) throws {
        let settings = try ValueStepTrainingSettings(reading: &reader)
        for (given, flag) in [(initial != nil, "--initial"), (f16, "--f16"), (localityCorpus != nil, "--locality-corpus")]
        where given {
            throw CLIError("\(flag) does not apply to design=value_steps")
        }
        if let stopAt, stopAt < 1 { throw CLIError("--stop-at \(stopAt): must be positive") }
        let (specs, trainingCases, validationCases) = try cases()
        let training = try trainingCases.compactMap { try ValueStepSample.make($0, model: loaded) }
        let validation = try validationCases.compactMap { try ValueStepSample.make($0, model: loaded) }
        guard !training.isEmpty, !validation.isEmpty else { throw CLIError("--train/--val: no usable records") }
        let output = URL(fileURLWithPath: out)
        var provenance = Provenance.fields().reduce(into: [String: String]()) { $0["ibke.training.\($1.key)"] = $1.value }
        provenance["ibke.training.data"] = specs.map(\.description).joined(separator: ",")
        provenance["ibke.training.validation_data"] = val ?? "held out"
        provenance["ibke.training.records"] = String(training.count)
        provenance["ibke.training.command"] = CommandLine.arguments.dropFirst().joined(separator: " ")
        let trainer = try ValueStepTrainer(model: loaded, settings: settings, training: training, validation: validation)
        log(
            "ibke value steps: \(trainer.network.bank.count) parameters, \(training.count) training and \(validation.count) validation records, \(settings.steps) requests"
        )
        let checkpoint = URL(fileURLWithPath: out + ".checkpoint")
        if resume {
            try trainer.restore(from: checkpoint)
            log("resuming at request \(trainer.step)")
        }
        let csvURL = URL(fileURLWithPath: out + ".validation.csv")
        var csv = "step,prompt,paraphrase,final_loss\n"
        for (step, v) in trainer.validations { csv += String(format: "%d,%.4f,%.4f,%.4f\n", step, v.prompt, v.paraphrase, v.finalLoss) }
        var window: [(Double, Double, Double, Double)] = []
        let start = Date()
        try trainer.run(
            stopAt: stopAt,
            save: { network, v in
                var p = provenance
                p["ibke.training.validation"] = String(format: "prompt %.3f, paraphrase %.3f", v.prompt, v.paraphrase)
                try ValueStepEditor.save(network, provenance: p, to: output, model: loaded)
            },
            report: { event in
                switch event {
                case .step(let step, let loss, let prompt, let paraphrase, let divergence):
                    window.append((loss, prompt, paraphrase, divergence))
                    if window.count > 100 { window.removeFirst() }
                    if step % 50 == 0 {
                        func mean(_ f: ((Double, Double, Double, Double)) -> Double) -> Double {
                            let values = window.map(f).filter(\.isFinite)
                            return values.reduce(0, +) / Double(max(1, values.count))
                        }
                        log(
                            String(
                                format: "request %d: value loss %.3f, prompt NLL %.3f, paraphrase NLL %.3f, latent KL %.3f (%.0f s)", step,
                                mean(\.0), mean(\.1), mean(\.2), mean(\.3), Date().timeIntervalSince(start)))
                    }
                case .validation(let step, let v, let best):
                    csv += String(format: "%d,%.4f,%.4f,%.4f\n", step, v.prompt, v.paraphrase, v.finalLoss)
                    try? AtomicFile.write(Data(csv.utf8), to: csvURL) { CLIError($0) }
                    log(
                        String(
                            format: "validation at request %d: prompt %.1f%%, paraphrase %.1f%%, value loss %.3f%@", step, v.prompt * 100,
                            v.paraphrase * 100, v.finalLoss, best ? " (best so far: saved)" : ""))
                }
            },
            checkpoint: { try trainer.saveCheckpoint(to: checkpoint) })
        log(trainer.step < settings.steps ? "stopped at request \(trainer.step): --resume continues" : "done: wrote \(out)")
    }
}
