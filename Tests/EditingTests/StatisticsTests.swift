import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

/// Second moments: the accumulation against a direct computation, the cache and its key checks.
@Suite struct StatisticsTests {
    /// `Σ k kᵀ / N` over every key of every window, each window run alone, in Double.
    static func directSecondMoment(_ model: LanguageModel, windows: [[Int]], layer: Int) throws -> [Double] {
        let f = model.config.feedForwardSize
        var sum = [Double](repeating: 0, count: f * f)
        var n = 0
        for window in windows {
            let keys = try model.transformer.forward(
                [window], interventions: [.capture(.feedForwardHidden, layer: layer)],
                logits: .none
            ).captures[HookKey(.feedForwardHidden, layer: layer)]!
            for t in 0..<window.count {
                for i in 0..<f {
                    let ki = Double(keys[t * f + i])
                    for j in 0..<f { sum[i * f + j] += ki * Double(keys[t * f + j]) }
                }
            }
            n += window.count
        }
        return sum.map { $0 / Double(n) }
    }

    static func relativeDistance(_ a: [Double], _ b: Tensor) -> Double {
        var difference = 0.0
        var norm = 0.0
        for i in a.indices {
            difference += (a[i] - Double(b[i])) * (a[i] - Double(b[i]))
            norm += a[i] * a[i]
        }
        return (difference / norm).squareRoot()
    }

    static func isSymmetric(_ c: Tensor) -> Bool {
        let f = c.shape[0]
        return (0..<f).allSatisfy { i in (0..<i).allSatisfy { j in c[i * f + j] == c[j * f + i] } }
    }

    @Test func theTinyLlamasSecondMomentMatchesADirectComputation() throws {
        let model = try TestModels.tinyLlama()
        let corpus = try TextCorpus(url: CorpusTests.fixture)
        let windows = TokenWindows.make(documents: corpus.documents, maxLength: 24, samples: 300, seed: 3, encode: model.encode)
        #expect(windows.map(\.count).reduce(0, +) == 300)
        // Small batches: several ragged forward passes and float64 additions.
        let accumulators = try StatisticsCollector.accumulate(windows, layers: [0, 1], model: model, batchTokens: 50)
        for (layer, accumulator) in zip([0, 1], accumulators) {
            #expect(accumulator.tokenCount == 300)
            let c = accumulator.mean()
            #expect(c.shape == [model.config.feedForwardSize, model.config.feedForwardSize])
            #expect(Self.isSymmetric(c))
            let distance = Self.relativeDistance(try Self.directSecondMoment(model, windows: windows, layer: layer), c)
            #expect(distance < 1e-5, "layer \(layer): \(distance)")
        }
    }

    @Test func blocksOfWideKeysAddUpToTheFullProduct() {
        // 600 columns: three column blocks, so sgemm above the diagonal blocks is exercised.
        let n = 70
        let f = 600
        var random = SplitMix64(seed: 11)
        let keys = Tensor(shape: [n, f], values: (0..<n * f).map { _ in random.nextUnit() * 2 - 1 })
        let accumulator = SecondMomentAccumulator(width: f)
        accumulator.add(keys, rows: 0..<30)
        SecondMomentAccumulator.add([keys.rows(30..<n)], to: [accumulator])
        var direct = [Double](repeating: 0, count: f * f)
        for t in 0..<n {
            for i in 0..<f {
                for j in 0..<f { direct[i * f + j] += Double(keys[t * f + i]) * Double(keys[t * f + j]) / Double(n) }
            }
        }
        let c = accumulator.mean()
        #expect(accumulator.tokenCount == n)
        #expect(Self.isSymmetric(c))
        #expect(Self.relativeDistance(direct, c) < 1e-6)
    }

    @Test func theRidgeSolveInvertsTheMatrix() throws {
        let a = Tensor(shape: [3, 3], values: [4, 1, 0, 1, 3, 1, 0, 1, 2])
        let key = StatisticsKey(
            modelSHA256: "m", layer: 0, source: .corpus, corpus: "c", corpusSHA256: "h", sampling: "s",
            samples: 10, windowLength: 4)
        let x = try SecondMoment(key: key, matrix: a, tokenCount: 10, windowCount: 1)
            .solve(Tensor(shape: [2, 3], values: [1, 2, 3, 0, 1, 0]))
        for r in 0..<2 {
            for i in 0..<3 {
                let ax = (0..<3).reduce(Float(0)) { $0 + a[i * 3 + $1] * x[r * 3 + $1] }
                #expect(abs(ax - [[1, 2, 3], [0, 1, 0]][r][i]) < 1e-5)
            }
        }
        // No ridge makes an indefinite matrix a second moment.
        #expect(throws: CholeskyError.self) { try DenseSolve.CholeskyFactor(regularizing: Tensor(shape: [2, 2], values: [1, 2, 2, 1])) }
    }

    /// Keys computed on quantized blocks are their own; float32 keys keep the fields (and the
    /// file names) they had before the field existed.
    @Test func theComputePrecisionIsPartOfTheKey() {
        let f32 = Self.key()
        #expect(!f32.fields.contains { $0.name == "ibke.compute" })
        var native = f32
        native.compute = .native
        #expect(native.fields.last! == ("ibke.compute", "native"))
        #expect(native.fileName != f32.fileName)
    }

    static func key(layer: Int = 4, model: String = "aa", corpusSHA256: String = "cc", samples: Int? = 1000) -> StatisticsKey {
        StatisticsKey(
            modelSHA256: model, layer: layer, source: .corpus, corpus: "a.txt,b.jsonl", corpusSHA256: corpusSHA256,
            sampling: TokenWindows.scheme(seed: 1), samples: samples, windowLength: 512)
    }

    static func temporaryCache() -> StatisticsCache {
        StatisticsCache(
            directory: FileManager.default.temporaryDirectory.appendingPathComponent("stats-\(UUID().uuidString)"),
            ibkeVersion: "test")
    }

    @Test func theCacheRoundTripsAndRecordsTheKey() throws {
        let cache = Self.temporaryCache()
        let key = Self.key()
        #expect(try cache.load(key) == nil)
        let matrix = Tensor(shape: [2, 2], values: [2, 0.5, 0.5, 1])
        let url = try cache.store(
            SecondMoment(
                key: key, matrix: matrix, tokenCount: 1000, windowCount: 3,
                provenance: ["ibke.model": "m.gguf"]))
        #expect(url.lastPathComponent == key.fileName && key.fileName.hasPrefix("mom2-L4-"))
        let loaded = try #require(try cache.load(key))
        #expect(loaded.matrix.scalars == matrix.scalars && loaded.tokenCount == 1000 && loaded.windowCount == 3)
        #expect(loaded.key == key && loaded.trace == 3)
        for field in ["ibke.model", "ibke.version", "ibke.created", "ibke.token_count", "ibke.format"] {
            #expect(loaded.provenance[field] != nil, "\(field)")
        }
        #expect(
            Set(
                [key, Self.key(layer: 5), Self.key(model: "ab"), Self.key(corpusSHA256: "cd"), Self.key(samples: nil)]
                    .map(\.fileName)
            ).count == 5)
    }

    /// A key that differs from ``key(layer:model:corpusSHA256:samples:)``'s defaults in one field.
    struct OtherKey: Sendable, CustomTestStringConvertible {
        let key: StatisticsKey
        let field: String
        var testDescription: String { field }
    }

    @Test(arguments: [
        OtherKey(key: StatisticsTests.key(model: "bb"), field: "model (SHA-256)"),
        OtherKey(key: StatisticsTests.key(layer: 5), field: "layer"),
        OtherKey(key: StatisticsTests.key(corpusSHA256: "dd"), field: "corpus (SHA-256)"),
        OtherKey(key: StatisticsTests.key(samples: 2000), field: "token count"),
    ])
    func aFileOfAnotherKeyIsRefused(_ other: OtherKey) throws {
        let cache = Self.temporaryCache()
        let stored = try cache.store(
            SecondMoment(
                key: Self.key(), matrix: Tensor(shape: [1, 1], values: [1]), tokenCount: 1000,
                windowCount: 1))
        // The file under the other key's name (a copied or renamed file): loading refuses it.
        try FileManager.default.copyItem(at: stored, to: cache.url(for: other.key))
        do {
            _ = try cache.load(other.key)
            Issue.record("statistics of another \(other.field) were accepted")
        } catch let error as StatisticsError {
            guard case .keyMismatch(_, let field, _, _) = error else { throw error }
            #expect(field == other.field)
            #expect(error.description.contains("refusing"))
        }
    }

    @Test func collectComputesOnceThenLoadsFromTheCache() throws {
        let model = try TestModels.tinyLlama()
        let cache = Self.temporaryCache()
        var options = StatisticsOptions(layers: [1, 0], corpus: CorpusTests.fixture)
        options.samples = 200
        options.maxLength = 32
        var phases: Set<String> = []
        let first = try StatisticsCollector.collect(options, model: model, cache: cache) { phases.insert($0.phase) }
        #expect(first.map(\.moment.layer) == [0, 1] && first.allSatisfy { !$0.loadedFromCache })
        #expect(first.allSatisfy { $0.moment.tokenCount == 200 && $0.moment.key.source == .corpus })
        #expect(phases.contains("collecting layers 0,1"))
        #expect(first[0].moment.key.modelSHA256 == (try model.contentHash()))
        #expect(first[0].moment.key.corpus == "articles.txt,more/history.tokens,notes.jsonl")
        #expect(first[0].moment.provenance["ibke.model"] == "tiny-llama")

        let again = try StatisticsCollector.collect(options, model: model, cache: cache)
        #expect(again.allSatisfy { $0.loadedFromCache })
        #expect(again[1].moment.matrix.scalars == first[1].moment.matrix.scalars)
        options.layers = [1]
        options.force = true
        #expect(try StatisticsCollector.collect(options, model: model, cache: cache).map(\.loadedFromCache) == [false])
        options.force = false
        options.samples = 150
        #expect(try StatisticsCollector.collect(options, model: model, cache: cache).map(\.loadedFromCache) == [false])
    }

    @Test func withoutACorpusTheModelsOwnTextIsUsedAndLabelled() throws {
        let model = try TestModels.tinyLlama()
        var options = StatisticsOptions(layers: [1], corpus: nil)
        options.samples = 100
        options.maxLength = 16
        let result = try #require(try StatisticsCollector.collect(options, model: model, cache: Self.temporaryCache()).first)
        #expect(result.moment.key.source == .modelSamples && result.moment.tokenCount == 100)
        #expect(result.moment.key.corpus.hasPrefix("model samples: top-k 40"))
        #expect(result.moment.windowCount >= 100 / 16)
        // Reproducible from the seed.
        let windows = try ModelSampling(seed: 1).windows(model, samples: 100, maxLength: 16)
        #expect(try ModelSampling(seed: 1).windows(model, samples: 100, maxLength: 16) == windows)
        #expect(try ModelSampling(seed: 2).windows(model, samples: 100, maxLength: 16) != windows)
        #expect(windows.allSatisfy { $0.first == model.tokenizer.bosTokenID })
    }

    @Test func badOptionsAreRefused() throws {
        let model = try TestModels.tinyLlama()
        let cache = Self.temporaryCache()
        var options = StatisticsOptions(layers: [2], corpus: CorpusTests.fixture)
        #expect(throws: StatisticsError.invalidOption(detail: "layer 2 does not exist; the model has layers 0–1")) {
            try StatisticsCollector.collect(options, model: model, cache: cache)
        }
        options.layers = [0]
        options.maxLength = 512
        #expect(throws: StatisticsError.self) { try StatisticsCollector.collect(options, model: model, cache: cache) }
        options = StatisticsOptions(layers: [0], corpus: nil)
        options.samples = nil
        #expect(throws: StatisticsError.self) { try StatisticsCollector.collect(options, model: model, cache: cache) }
    }
}
