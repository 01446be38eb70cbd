import Foundation
import ModelFormats
import Models
import TensorCore
import Testing

@testable import Editing

/// `SecondMoments` (the statistics editors share), the registry's wiring of it into ROME, the
/// protocol's `statistics` and `commit`, and sequential editing.
@Suite struct SecondMomentsTests {
    /// Counts the statistics phases reported (thread-safe: `SecondMoments` may report from any thread).
    final class Phases: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [String] = []
        func add(_ p: StatisticsProgress) { lock.withLock { if seen.last != p.phase { seen.append(p.phase) } } }
        var all: [String] { lock.withLock { seen } }
        var collections: [String] { all.filter { $0.hasPrefix("collecting") } }
    }

    func moments(
        _ model: LanguageModel, corpus: URL? = CorpusTests.fixture, samples: Int = 200,
        cache: StatisticsCache = StatisticsTests.temporaryCache(), phases: Phases = Phases()
    ) -> SecondMoments {
        SecondMoments(model: model, corpus: corpus, samples: samples, cache: cache) { phases.add($0) }
    }

    @Test func matricesAreComputedOnceAndExpectedLayersInOnePass() throws {
        let model = try TestModels.tinyLlama()
        let cache = StatisticsTests.temporaryCache()
        let phases = Phases()
        let statistics = moments(model, cache: cache, phases: phases)
        #expect(statistics.cacheDirectory == cache.directory)
        #expect(statistics.options.maxLength == model.config.contextLength)  // 128 < 512
        statistics.expect(layers: [1])
        statistics.expect(layers: [0, 1])
        #expect(statistics.expectedLayers == [0, 1])

        let c0 = try statistics.matrix(layer: 0)
        #expect(c0.shape == [model.config.feedForwardSize, model.config.feedForwardSize])
        #expect(phases.collections == ["collecting layers 0,1"], "\(phases.all)")
        // Both layers were computed and cached by that one pass; nothing more is computed.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache.directory.path).count == 2)
        let c1 = try statistics.matrix(layer: 1)
        #expect(try statistics.matrix(layer: 0).scalars == c0.scalars)
        try statistics.prepare(layers: [0, 1])
        #expect(phases.collections.count == 1)

        // The same as collecting directly, and a second instance loads from the cache.
        var options = StatisticsOptions(layers: [1], corpus: CorpusTests.fixture)
        options.samples = 200
        options.maxLength = model.config.contextLength
        let direct = try StatisticsCollector.collect(options, model: model, cache: cache)
        #expect(direct[0].loadedFromCache && direct[0].moment.matrix.scalars == c1.scalars)
        let again = Phases()
        #expect(try moments(model, cache: cache, phases: again).matrix(layer: 1).scalars == c1.scalars)
        #expect(again.collections.isEmpty)
    }

    @Test func concurrentCallersShareOneCollection() throws {
        let model = try TestModels.tinyLlama()
        let phases = Phases()
        let statistics = moments(model, phases: phases)
        final class Found: @unchecked Sendable {
            let lock = NSLock()
            var values: [Float] = []
        }
        let found = Found()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            let c = try! statistics.matrix(layer: 1)
            found.lock.withLock { found.values.append(c[0]) }
        }
        #expect(found.values.count == 4 && Set(found.values).count == 1)
        #expect(phases.collections == ["collecting layers 1"])
    }

    @Test func theLabelNamesTheCorpusOrTheFallback() throws {
        let model = try TestModels.tinyLlama()
        let corpus = try TextCorpus(url: CorpusTests.fixture)
        let statistics = moments(model)
        let expected = "corpus articles.txt,more/history.tokens,notes.jsonl (sha256 \(corpus.sha256.prefix(8))…), 200 tokens"
        #expect(statistics.label == expected)
        _ = try statistics.matrix(layer: 0)
        #expect(statistics.label == expected)
        #expect(!statistics.isFallback)

        // More tokens asked than the corpus has: the label gives the number averaged.
        let short = moments(model, samples: 1_000_000)
        #expect(short.label.hasSuffix(", 1000000 tokens"))
        let counted = try short.moment(layer: 0).tokenCount
        #expect(counted < 1_000_000 && short.label.hasSuffix(", \(counted) tokens"))

        let fallback = moments(model, corpus: nil, samples: 48)
        #expect(fallback.isFallback)
        #expect(fallback.label == "model-samples (fallback: text sampled from the model itself), 48 tokens")
        #expect(try fallback.moment(layer: 1).key.source == .modelSamples)
        #expect(fallback.label == "model-samples (fallback: text sampled from the model itself), 48 tokens")
    }

    @Test func romeNeedsStatisticsFromTheRegistryUnlessMom2IsOff() throws {
        let model = try TestModels.tinyLlama()
        do {
            _ = try EditorRegistry.make(.rome, config: model.config)
            Issue.record("ROME with mom2_adjustment and no statistics was made")
        } catch let error as EditorError {
            guard case .invalidHyperparameter(let file, let key, let expected) = error else { throw error }
            #expect(file == "rome" && key == "mom2_adjustment")
            #expect(expected.contains("layer 0") && expected.contains("SecondMoments") && expected.contains("mom2_adjustment: false"))
            #expect(!expected.contains("--"), "library messages name no command-line flags")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rome-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let off = folder.appendingPathComponent("rome.yaml")
        try Data("mom2_adjustment: false\n".utf8).write(to: off)
        #expect(try EditorRegistry.make(.rome, config: model.config, hyperparameters: off).statistics == .none)

        let statistics = moments(model)
        let rome = try EditorRegistry.make(.rome, config: model.config, statistics: statistics)
        #expect(statistics.expectedLayers == [0])
        #expect(rome.statistics == .labelled(statistics.label))
        #expect(try EditorRegistry.make(.ftM, config: model.config, statistics: statistics).statistics == .none)
        #expect(statistics.expectedLayers == [0])
    }

    /// ROME with C from `SecondMoments` edits the tiny model and records the statistics in its delta.
    @Test func romeEditsWithSecondMoments() throws {
        let model = try TestModels.tinyLlama()
        let statistics = moments(model)
        var h = ROME.Hyperparameters.defaults(layerCount: model.config.layerCount)
        h.contextTemplates = [[4, 2]]
        let editor = ROME(hyperparameters: h, statistics: SecondMomentSource(statistics))
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let before = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0].totalLogProb
        let delta = try editor.edit([request], in: model)
        #expect(delta.metadata["ibke.statistics"] == statistics.label)
        #expect(delta.metadata["ibke.statistics"]?.hasPrefix("corpus articles.txt") == true)
        let applied = try model.transformer.apply(delta)
        defer { applied.revert() }
        let after = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target)])[0].totalLogProb
        #expect(after > before + 1, "log P(target) \(before) → \(after)")
    }

    /// An editor that counts `commit` calls around FT-M.
    final class CountingEditor: Editor, @unchecked Sendable {
        let inner: FineTuning
        var commits: [[String]] = []
        init(_ inner: FineTuning) { self.inner = inner }
        var name: String { inner.name }
        var hyperparameters: JSONValue { inner.hyperparameters }
        var statistics: EditorStatistics { .labelled("counted statistics") }
        func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
            try inner.edit(requests, in: model)
        }
        func commit(_ requests: [PreparedRequest], in model: LanguageModel) throws {
            commits.append(requests.map(\.request.subject))
        }
    }

    static func requests(_ model: LanguageModel) throws -> [PreparedRequest] {
        try ["Alice", "Bob", "Carol"].enumerated().map { i, subject in
            try EditRequest(prompt: "{} lives in", subject: subject, targetNew: "city \(i)").prepared(for: model)
        }
    }

    static func fineTuning(_ model: LanguageModel) -> FineTuning {
        var h = FineTuning.Hyperparameters.defaults(.targetNew, layerCount: model.config.layerCount)
        h.learningRate = 5e-2
        return FineTuning(name: "ft-m", hyperparameters: h)
    }

    /// Sequential editing applies and commits each edit before the next, and its combined delta,
    /// saved and applied to the unedited model, gives the same weights bit for bit.
    @Test func sequentialEditsCommitAndTheirDeltaReproducesTheModel() throws {
        let model = try TestModels.tinyLlama()
        let requests = try Self.requests(model)
        let editor = CountingEditor(Self.fineTuning(model))
        let original = model.transformer.weights.blocks.map(\.feedForwardDown.scalars)
        var seen: [Int] = []
        let edits = try editor.editSequentially(requests, in: model) { i, _ in
            seen.append(i)
            #expect(editor.commits.count == i + 1)
        }
        #expect(seen == [0, 1, 2] && editor.commits == [["Alice"], ["Bob"], ["Carol"]])
        #expect(edits.applied.count == 3 && edits.delta.entries.count == 3)
        #expect(edits.delta.metadata["ibke.protocol"] == "sequential" && edits.delta.metadata["ibke.statistics"] == "counted statistics")
        #expect(edits.delta.metadata["ibke.requests"]?.contains("Carol") == true)
        let edited = model.transformer.weights.blocks.map(\.feedForwardDown.scalars)
        #expect(edited != original)

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sequence-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: file) }
        try edits.delta.save(to: file)
        edits.revert()
        #expect(model.transformer.weights.blocks.map(\.feedForwardDown.scalars) == original)

        let fresh = try TestModels.tinyLlama()
        try fresh.transformer.apply(try WeightDelta.load(from: file))
        #expect(fresh.transformer.weights.blocks.map(\.feedForwardDown.scalars) == edited)
    }

    @Test func aFailedSequentialEditRevertsTheEarlierOnes() throws {
        let model = try TestModels.tinyLlama()
        var requests = try Self.requests(model)
        let original = model.transformer.weights.blocks.map(\.feedForwardDown.scalars)
        let editor = CountingEditor(Self.fineTuning(model))
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            _ = try editor.editSequentially(requests, in: model) { i, _ in if i == 1 { throw Stop() } }
        }
        #expect(model.transformer.weights.blocks.map(\.feedForwardDown.scalars) == original)
        requests.removeAll()
        #expect(try editor.editSequentially(requests, in: model).delta.entries.isEmpty)
    }
}
