import Foundation
import Models
import TensorCore

/// What ``StatisticsCollector/collect(_:model:cache:progress:)`` computes.
public struct StatisticsOptions: Sendable {
    /// Tokens per statistic by default. Measured on SmolLM2 (Docs/statistics.md): at 200k
    /// tokens ROME's `u = C⁻¹k*` agrees with the 400k estimate to cosine ≥ 0.99 (0.98 at 100k)
    /// and C to 5–11% in Frobenius norm, for about 1.5 minutes of collection, once per model.
    public static let defaultSamples = 200_000

    public var layers: [Int]
    /// A corpus file or folder (``TextCorpus``); nil samples the text from the model.
    public var corpus: URL?
    /// Tokens to average over; nil for the whole corpus (a corpus is required then).
    public var samples: Int? = defaultSamples
    /// Longest window, in tokens.
    public var maxLength = 512
    /// Seed of the window shuffle or of the model sampler.
    public var seed: UInt64 = 1
    /// Tokens per forward pass.
    public var batchTokens = 2048
    /// Recompute (and overwrite) statistics the cache has.
    public var force = false

    public init(layers: [Int], corpus: URL?) {
        self.layers = layers
        self.corpus = corpus
    }
}

/// Where a long collection stands.
public struct StatisticsProgress: Sendable {
    public var phase: String
    public var done: Int
    public var total: Int
}

/// One layer's statistics and where they came from.
public struct CollectedStatistics: Sendable {
    public var moment: SecondMoment
    /// The cache file.
    public var file: URL
    public var loadedFromCache: Bool
}

/// Collects second moments of `ffn_down` inputs (METHODS.md §6): all requested layers in one
/// forward pass per batch that stops after the highest of them.
public enum StatisticsCollector {
    /// Loads each layer's statistics from `cache`, or computes the missing ones (in one pass
    /// over the text) and stores them.
    ///
    /// - Throws: ``StatisticsError`` for bad options, an unreadable or empty corpus, or a cache
    ///   file of another key; `ModelError` from the forward pass.
    public static func collect(
        _ options: StatisticsOptions, model: LanguageModel, cache: StatisticsCache,
        progress: (StatisticsProgress) -> Void = { _ in }
    ) throws -> [CollectedStatistics] {
        let layers = Array(Set(options.layers)).sorted()
        try validate(options, layers: layers, config: model.config)
        let modelHash = try model.contentHash()
        var corpus: TextCorpus?
        var keys: [StatisticsKey]
        if let url = options.corpus {
            let text = try TextCorpus(url: url)
            corpus = text
            keys = layers.map {
                StatisticsKey(
                    modelSHA256: modelHash, layer: $0, source: .corpus, corpus: text.identity,
                    corpusSHA256: text.sha256, sampling: TokenWindows.scheme(seed: options.seed),
                    samples: options.samples, windowLength: options.maxLength)
            }
        } else {
            let sampling = try ModelSampling(seed: options.seed).description(model)
            keys = layers.map {
                StatisticsKey(
                    modelSHA256: modelHash, layer: $0, source: .modelSamples, corpus: sampling,
                    corpusSHA256: "none", sampling: ModelSampling.scheme(maxLength: options.maxLength),
                    samples: options.samples, windowLength: options.maxLength)
            }
        }

        for i in keys.indices { keys[i].compute = model.transformer.precision }
        var results: [Int: CollectedStatistics] = [:]
        if !options.force {
            for key in keys {
                if let moment = try cache.load(key) {
                    results[key.layer] = CollectedStatistics(moment: moment, file: cache.url(for: key), loadedFromCache: true)
                }
            }
        }
        let missing = keys.filter { results[$0.layer] == nil }
        if !missing.isEmpty {
            let start = Date()
            let windows: [[Int]]
            if let corpus {
                let phase = "tokenising \(corpus.documents.count) documents"
                progress(StatisticsProgress(phase: phase, done: 0, total: 1))
                windows = TokenWindows.make(
                    documents: corpus.documents, maxLength: options.maxLength,
                    samples: options.samples, seed: options.seed, encode: model.encode)
                progress(StatisticsProgress(phase: phase, done: 1, total: 1))
                guard !windows.isEmpty else {
                    throw StatisticsError.empty(file: corpus.root.path, detail: "the corpus has no tokens")
                }
            } else {
                windows = try ModelSampling(seed: options.seed).windows(model, samples: options.samples!, maxLength: options.maxLength) {
                    progress(StatisticsProgress(phase: "sampling text from the model", done: $0, total: $1))
                }
            }
            let accumulators = try accumulate(
                windows, layers: missing.map(\.layer), model: model,
                batchTokens: options.batchTokens, progress: progress)
            var provenance = [
                "ibke.model": model.url.lastPathComponent,
                "ibke.seconds": String(format: "%.1f", Date().timeIntervalSince(start)),
            ]
            if let corpus { provenance["ibke.corpus_path"] = corpus.root.path }
            for (key, accumulator) in zip(missing, accumulators) {
                let moment = SecondMoment(
                    key: key, matrix: accumulator.mean(), tokenCount: accumulator.tokenCount,
                    windowCount: windows.count, provenance: provenance)
                let file = try cache.store(moment)
                results[key.layer] = CollectedStatistics(moment: moment, file: file, loadedFromCache: false)
            }
        }
        return layers.map { results[$0]! }
    }

    /// Accumulates `Σ k kᵀ` of each layer over `windows`, in batches of about `batchTokens`.
    public static func accumulate(
        _ windows: [[Int]], layers: [Int], model: LanguageModel, batchTokens: Int,
        progress: (StatisticsProgress) -> Void = { _ in }
    ) throws -> [SecondMomentAccumulator] {
        let accumulators = layers.map { _ in SecondMomentAccumulator(width: model.config.feedForwardSize) }
        let total = windows.reduce(0) { $0 + $1.count }
        let phase = "collecting layers \(layers.map(String.init).joined(separator: ","))"
        var done = 0
        progress(StatisticsProgress(phase: phase, done: 0, total: total))
        for batch in TokenWindows.batches(windows, tokens: batchTokens) {
            SecondMomentAccumulator.add(try keys(of: batch, layers: layers, in: model), to: accumulators)
            done += batch.reduce(0) { $0 + $1.count }
            progress(StatisticsProgress(phase: phase, done: done, total: total))
        }
        return accumulators
    }

    /// The keys (`ffn_down` inputs, `[N, F]`) of each layer for a batch, from a pass that
    /// stops after the highest layer.
    public static func keys(of sequences: [[Int]], layers: [Int], in model: LanguageModel) throws -> [Tensor] {
        let transformer = model.transformer
        let captures = layers.map { Intervention.capture(.feedForwardHidden, layer: $0) }
        let top = layers.max() ?? 0
        let found =
            top + 1 < transformer.config.layerCount
            ? try transformer.prefix(sequences, layers: top + 1, interventions: captures).captures
            : try transformer.forward(sequences, interventions: captures, logits: .none).captures
        return layers.map { found[HookKey(.feedForwardHidden, layer: $0)]! }
    }

    static func validate(_ options: StatisticsOptions, layers: [Int], config: TransformerConfig) throws {
        guard !layers.isEmpty else { throw StatisticsError.invalidOption(detail: "no layers given") }
        if let bad = layers.first(where: { !(0..<config.layerCount).contains($0) }) {
            throw StatisticsError.invalidOption(detail: "layer \(bad) does not exist; the model has layers 0–\(config.layerCount - 1)")
        }
        guard options.maxLength > 0 && options.maxLength <= config.contextLength else {
            throw StatisticsError.invalidOption(
                detail: "window length \(options.maxLength) is outside 1…\(config.contextLength) (the model's context)")
        }
        guard options.batchTokens > 0 else { throw StatisticsError.invalidOption(detail: "batch of \(options.batchTokens) tokens") }
        if let samples = options.samples, samples <= 0 {
            throw StatisticsError.invalidOption(detail: "sample size \(samples): ask for at least one token")
        }
        if options.samples == nil && options.corpus == nil {
            throw StatisticsError.invalidOption(detail: "the whole corpus was asked for, but no corpus was given")
        }
    }
}
