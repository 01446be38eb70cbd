import ArgumentParser
import Editing
import Foundation
import Models

/// `ibke stats`: second-moment statistics of MLP keys, the `C` of ROME, MEMIT and AlphaEdit.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Collect (or load from the cache) C = E[k kᵀ] of the ffn_down input of some layers.",
        discussion: """
            Files go to $IBKE_HOME/cache/stats, one per layer, keyed by the model's content hash, the corpus \
            (file names and SHA-256), the token count, the window length and the seed. Without --corpus the text \
            is the small corpus sample shipped with ibke (about 18,000 tokens), as for `ibke edit` without --stats-corpus.
            Example: ibke stats --layers 4-8 --corpus ../shared/data/text_corpus
            """)

    @OptionGroup var model: ModelOptions
    @Option(help: ArgumentHelp("Layers: a range, a list, or both (4-8, 4,5,6, 3-5,8).", valueName: "layers"))
    var layers: String
    @Option(
        help: ArgumentHelp(
            "A .txt, .jsonl or WikiText .tokens file, or a folder of them (default: the corpus sample shipped with ibke).",
            valueName: "path"))
    var corpus: String?
    @Option(help: ArgumentHelp("Tokens to average over, or `all` (the whole corpus).", valueName: "n|all"))
    var samples = String(StatisticsOptions.defaultSamples)
    @Option(help: "Longest window, in tokens (default: 512, or the model's context if shorter).") var maxLength: Int?
    @Option(help: "Seed of the window shuffle.") var seed: UInt64 = 1
    @Flag(help: "Recompute and overwrite cached statistics.") var force = false

    func run() throws {
        let loaded = try model.load()
        var options = StatisticsOptions(
            layers: try Self.parseLayers(layers),
            corpus: try corpus.map { URL(fileURLWithPath: $0) } ?? StatisticsArguments.sample())
        options.samples = try Self.parseSamples(samples, option: "--samples")
        options.maxLength = maxLength ?? min(512, loaded.config.contextLength)
        options.seed = seed
        options.force = force
        if corpus == nil {
            log("no --corpus given: the statistics come from the small corpus sample shipped with ibke")
        }
        let cache = StatisticsCache(
            directory: DefaultModel.home.appendingPathComponent("cache/stats"),
            ibkeVersion: IBKECommand.version)
        let bar = ProgressBar()
        let start = Date()
        let results = try StatisticsCollector.collect(options, model: loaded, cache: cache) {
            bar.update(phase: $0.phase, done: $0.done, total: $0.total)
        }
        bar.finish()
        for result in results {
            let m = result.moment
            print(
                "layer \(m.layer): \(result.loadedFromCache ? "loaded from the cache" : "computed"), \(m.tokenCount) tokens "
                    + "(source: \(m.key.source.rawValue)), trace \(String(format: "%.6g", m.trace)), \(result.file.path)")
        }
        if let asked = options.samples, let short = results.first(where: { $0.moment.tokenCount < asked }) {
            log("note: the corpus holds only \(short.moment.tokenCount) tokens, fewer than the \(asked) asked for")
        }
        if results.contains(where: { !$0.loadedFromCache }) {
            log(String(format: "computed in %.1f s", Date().timeIntervalSince(start)))
        }
    }

    /// `4-8`, `4,5,6` or a mix, as sorted distinct layers.
    static func parseLayers(_ text: String) throws -> [Int] {
        var layers = Set<Int>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
                .map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(bounds.count), let first = bounds[0], let last = bounds[bounds.count - 1],
                first >= 0, first <= last
            else {
                throw CLIError("--layers \(text): expected layers such as 4-8 or 4,5,6")
            }
            layers.formUnion(first...last)
        }
        return layers.sorted()
    }

    /// A positive token count, or nil for `all`.
    static func parseSamples(_ text: String, option: String) throws -> Int? {
        if text == "all" { return nil }
        guard let n = Int(text), n > 0 else { throw CLIError("\(option) \(text): expected a positive token count or `all`") }
        return n
    }
}
