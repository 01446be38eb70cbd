import Foundation
import Models
import TensorCore

/// The second moments `C = E[k kᵀ]` of one model's `ffn_down` inputs as editors need them
/// (ROME, MEMIT, AlphaEdit): each layer's matrix loaded from ``StatisticsCache`` or computed
/// into it (``StatisticsCollector``) on first use, then kept in memory.
///
/// One instance per model, shared by every editor of a run, so that a layer is read or computed
/// once. Layers announced with ``expect(layers:)`` (the registry does this for each editor that
/// uses statistics) are collected together, in one pass over the text, by the first
/// ``matrix(layer:)`` or ``prepare(layers:)`` that has to compute anything. Safe to call from
/// several threads: callers wait while a collection runs.
/// `@unchecked Sendable`: `moments`, `expected` and `corpusIdentity` are touched only under `lock`;
/// a collection runs the model, so callers must own it then (editors run on the model's thread).
public final class SecondMoments: @unchecked Sendable {
    public let model: LanguageModel
    /// The corpus file or folder; nil: text sampled from the model (the fallback).
    public let corpus: URL?
    /// Tokens per statistic; nil: the whole corpus.
    public let samples: Int?
    public let cache: StatisticsCache
    /// What ``StatisticsCollector/collect(_:model:cache:progress:)`` is asked (window length,
    /// seed: the defaults of `ibke stats`, so that its cache files are found).
    public let options: StatisticsOptions
    private let progress: @Sendable (StatisticsProgress) -> Void

    private let lock = NSLock()
    private var moments: [Int: SecondMoment] = [:]
    private var expected: Set<Int> = []
    private var corpusIdentity: (names: [String], sha256: String)?

    /// Nothing is read or computed until a matrix is asked for (or ``label`` needs the corpus's
    /// hash).
    ///
    /// - Parameters:
    ///   - corpus: a `.txt`, `.jsonl` or WikiText file, or a folder of them (``TextCorpus``);
    ///     nil falls back to text sampled from the model itself, and ``label`` says so.
    ///   - samples: tokens to average over (nil: the whole corpus, which needs one).
    ///   - progress: called while statistics are computed (tokenising, sampling, collecting).
    public init(
        model: LanguageModel, corpus: URL?, samples: Int? = StatisticsOptions.defaultSamples, cache: StatisticsCache,
        progress: @escaping @Sendable (StatisticsProgress) -> Void = { _ in }
    ) {
        self.model = model
        self.corpus = corpus
        self.samples = samples
        self.cache = cache
        self.progress = progress
        var options = StatisticsOptions(layers: [], corpus: corpus)
        options.samples = samples
        options.maxLength = min(options.maxLength, model.config.contextLength)
        self.options = options
    }

    /// Where the statistics files are; editors cache matrices derived from them (AlphaEdit's
    /// projectors) here too, named after the ``SecondMoment/key``.
    public var cacheDirectory: URL { cache.directory }

    /// Whether the text is sampled from the model because no corpus was given.
    public var isFallback: Bool { corpus == nil }

    /// Layers an editor will ask for; the first collection computes all of them at once.
    public func expect(layers: [Int]) {
        lock.withLock { expected.formUnion(layers) }
    }

    /// The layers announced with ``expect(layers:)``, sorted.
    public var expectedLayers: [Int] { lock.withLock { expected.sorted() } }

    /// Loads or computes the statistics of `layers` (and of the expected layers not yet in
    /// memory) in one pass over the text.
    ///
    /// - Throws: ``StatisticsError`` (bad layers, an unreadable corpus, a cache file of another
    ///   key), errors of the forward pass.
    public func prepare(layers: [Int]) throws {
        try lock.withLock { try load(layers) }
    }

    /// `C` of `layer`, `[F, F]`.
    public func matrix(layer: Int) throws -> Tensor {
        try moment(layer: layer).matrix
    }

    /// `C` of `layer` with its key (for naming derived caches) and token count.
    public func moment(layer: Int) throws -> SecondMoment {
        try lock.withLock {
            try load([layer])
            return moments[layer]!
        }
    }

    /// Where the statistics come from, for reports and delta metadata:
    /// `corpus enwiki_articles_plain.txt (sha256 2e0b2e62…), 200000 tokens` or
    /// `model-samples (fallback: text sampled from the model itself), 200000 tokens`, or for
    /// ``CorpusSample`` `the corpus sample shipped with ibke (…), 17816 tokens`.
    /// The token count is the number averaged once a matrix is loaded (fewer than asked when the
    /// corpus is smaller), the number asked for before.
    public var label: String {
        lock.withLock {
            let counted = moments.values.map(\.tokenCount).min()
            let tokens = counted.map { "\($0) tokens" } ?? samples.map { "\($0) tokens" } ?? "all tokens"
            guard let corpus else {
                return "\(StatisticsSource.modelSamples.rawValue) (fallback: text sampled from the model itself), \(tokens)"
            }
            if corpusIdentity == nil, let first = moments.values.first {
                corpusIdentity = (first.key.corpus.split(separator: ",").map(String.init), first.key.corpusSHA256)
            }
            if corpusIdentity == nil, let text = try? TextCorpus(url: corpus) {
                corpusIdentity = (text.fileNames, text.sha256)
            }
            guard let (names, sha256) = corpusIdentity else { return "corpus \(corpus.path) (unreadable), \(tokens)" }
            if names == [CorpusSample.fileName] && sha256 == CorpusSample.sha256 {
                return "the corpus sample shipped with ibke (68 Wikipedia article openings), \(tokens)"
            }
            let files =
                names.count <= 3
                ? names.joined(separator: ",")
                : names.prefix(2).joined(separator: ",") + ",… (\(names.count) files)"
            return "corpus \(files) (sha256 \(sha256.prefix(8))…), \(tokens)"
        }
    }

    /// With the lock held: loads `layers` and the expected ones not in memory, if any of
    /// `layers` is missing.
    private func load(_ layers: [Int]) throws {
        guard layers.contains(where: { moments[$0] == nil }) else { return }
        var options = self.options
        options.layers = Array(Set(layers).union(expected).subtracting(moments.keys)).sorted()
        if let corpus, corpus.lastPathComponent == CorpusSample.fileName {
            _ = try CorpusSample.file(in: corpus.deletingLastPathComponent())
        }
        let results = try StatisticsCollector.collect(options, model: model, cache: cache, progress: progress)
        for result in results { moments[result.moment.layer] = result.moment }
    }
}
