import ArgumentParser
import Editing
import Evaluation
import Foundation
import Models

#if canImport(Glibc)
import Glibc
#endif

/// `ibke eval`: a benchmark run of one or more editing methods.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Edit every case of a benchmark with each method and measure the edits.",
        discussion: """
            Writes RUN/params.json, RUN/cases/METHOD/ID.json (one per case, as it finishes), RUN/summary.json \
            and RUN/summary.md. Pre-edit results are cached in $IBKE_HOME/cache/pre-edit and reused.
            Example: ibke eval --dataset zsre:data/zsre_eval.json --methods ft-l,ft-m --limit 200 --out runs/zsre-ft
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var statistics: StatisticsArguments
    @Option(help: ArgumentHelp("KIND:PATH with KIND zsre, counterfact (cf), mquake or jsonl.", valueName: "kind:path"))
    var dataset: String
    @Option(
        help: ArgumentHelp("Comma-separated methods (\(EditingMethod.namesWithAliases.joined(separator: ", "))).", valueName: "methods"),
        transform: { try $0.split(separator: ",").map { try EditingMethod(parsing: $0.trimmingCharacters(in: .whitespaces)) } })
    var methods: [EditingMethod]
    @Option(help: "Only the first N cases.") var limit: Int?
    @Option(name: .customLong("protocol"), help: "single, batch:N or sequential:N.") var editProtocol = "single"
    @Option(help: "Sequential runs: also evaluate the cases edited so far every N cases (a curve).") var every = 0
    @Option(help: "A target token counts as correct when it is among the k most likely.") var topK = 1
    @Flag(help: "Wrap evaluation prompts in the model's chat template.") var chat = false
    @Option(help: "Greedy tokens to generate per answer probe for generation-based metrics and fluency (0: off).")
    var generationTokens = 0
    @Option(
        help: ArgumentHelp(
            "Known facts (ROME's known_1000.json layout): measure after every edit the share of those the unedited model answers correctly that it still answers the same way.",
            valueName: "path"))
    var knowns: String?
    @Option(help: "zsRE new target: alt (EasyEdit, MEND) or gold (answers[0], ROME/MEMIT).") var zsreTarget: ZsRETarget = .alt
    @Option(help: "Random seed (recorded; editors that sample use it).") var seed: UInt64 = 42
    @Option(
        name: .customLong("hparams"), parsing: .upToNextOption,
        help: ArgumentHelp("METHOD=FILE: hyperparameters (JSON or YAML) for a method.", valueName: "method=file"))
    var hyperparameterFiles: [String] = []
    @Option(
        name: .customLong("editor"), parsing: .upToNextOption,
        help: ArgumentHelp(
            "METHOD=FILE: the trained editor of ibke or mend (default: the committed one for a model of `ibke model list` that has one).",
            valueName: "method=file"))
    var editorFiles: [String] = []
    @Option(help: "The run directory.") var out: String
    @Flag(help: "Continue an interrupted run in --out, skipping finished cases.") var resume = false

    func validate() throws {
        guard !methods.isEmpty else { throw ValidationError("--methods: name at least one method") }
    }

    func run() throws {
        let loaded = try model.load()
        let spec = try DatasetSpec(parsing: dataset)
        let data = try Dataset.load(spec, zsreTarget: zsreTarget, limit: limit)
        let files = try Self.methodFiles(hyperparameterFiles, option: "--hparams")
        let trained = try Self.methodFiles(editorFiles, option: "--editor")
        let bar = ProgressBar()
        let moments = try statistics.secondMoments(for: loaded, bar: bar)
        let editors = try methods.map {
            try EditorRegistry.make(
                $0, model: loaded, hyperparameters: files[$0], statistics: moments,
                editorFile: try CommittedEditors.file($0, given: trained[$0]?.path, model: loaded))
        }
        // Statistics before the run, so that collecting them is not counted as the first edit's time.
        try statistics.prepare(moments, bar: bar)

        var options = EvaluationOptions()
        options.editProtocol = try EditProtocol(parsing: editProtocol)
        options.evaluateEvery = every
        options.topK = topK
        options.chatTemplate = chat
        options.generationTokens = generationTokens
        options.zsreTarget = zsreTarget
        options.seed = seed
        options.resume = resume
        options.knownFacts = try knowns.map { try KnownFactsFile.load(path: $0) }
        options.cacheDirectory = DefaultModel.home.appendingPathComponent("cache")
        let run = try EvaluationRun(
            model: loaded, dataset: data, editors: editors, options: options,
            directory: URL(fileURLWithPath: out))
        run.provenance = Provenance.fields()
        log(
            "\(data.cases.count) cases of \(spec.kind) (\(data.format)), methods \(methods.map(\.rawValue).joined(separator: ",")), protocol \(options.editProtocol)"
        )
        run.progress = { bar.update($0) }
        run.warning = { log($0) }
        let summary = try run.run()
        bar.finish()
        print(SummaryTable.markdown([summary]))
        log("wrote \(out)/summary.json and summary.md")
    }
}

extension Eval {
    /// `METHOD=FILE` options as a dictionary.
    static func methodFiles(_ entries: [String], option: String) throws -> [EditingMethod: URL] {
        var files: [EditingMethod: URL] = [:]
        for entry in entries {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw CLIError("\(option) \(entry): expected METHOD=FILE") }
            files[try EditingMethod(parsing: parts[0])] = URL(fileURLWithPath: parts[1])
        }
        return files
    }
}

/// A one-line progress bar with rate and ETA on standard error, drawn only on a terminal.
/// `@unchecked Sendable`: its drawing state is unlocked; a bar is updated from one thread at a time
/// (a command's run, or a statistics collection under `SecondMoments`' lock).
final class ProgressBar: @unchecked Sendable {
    private let enabled = isatty(STDERR_FILENO) != 0
    private var phase = ""
    private var phaseStart = Date()
    private var firstDone = 0
    private var drawn = false

    func update(_ p: RunProgress) { update(phase: p.phase, done: p.done, total: p.total) }

    func update(phase newPhase: String, done: Int, total: Int) {
        guard enabled else { return }
        if newPhase != phase {
            if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
            phase = newPhase
            phaseStart = Date()
            firstDone = done
        }
        let width = 24
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let filled = Int(fraction * Double(width))
        let elapsed = Date().timeIntervalSince(phaseStart)
        let rate = done > firstDone ? elapsed / Double(done - firstDone) : 0
        let eta = rate > 0 ? " ETA \(Self.duration(rate * Double(total - done)))" : ""
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = "\r\u{1B}[K\(phase) \(bar) \(done)/\(total) \(Int(fraction * 100))%\(Self.rateText(rate))\(eta)"
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    /// Ends the bar's line; a later update starts a new one.
    func finish() {
        if enabled && drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
        phase = ""
    }

    /// Seconds per item, or items per second when items are fast (tokens).
    static func rateText(_ secondsPerItem: Double) -> String {
        secondsPerItem <= 0
            ? ""
            : secondsPerItem < 0.1
                ? String(format: " %.0f items/s", 1 / secondsPerItem)
                : String(format: " %.2f s/item", secondsPerItem)
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}

/// Where the running binary came from, for params.json.
enum Provenance {
    static func fields() -> [String: String] {
        var fields = ["ibke_version": IBKECommand.version, "run_started": ISO8601DateFormatter().string(from: Date())]
        // The checkout this binary was built from, if it is still there.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        if let commit = git(["rev-parse", "HEAD"], in: root) {
            let dirty = (git(["status", "--porcelain", "--untracked-files=no"], in: root) ?? "").isEmpty ? "" : " (uncommitted changes)"
            fields["git_commit"] = commit + dirty
        }
        #if swift(>=6.3)
        fields["swift"] = "6.3+"
        #else
        fields["swift"] = "6.x"
        #endif
        return fields
    }

    private static func git(_ arguments: [String], in directory: URL) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", directory.path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension ZsRETarget: ExpressibleByArgument {}
