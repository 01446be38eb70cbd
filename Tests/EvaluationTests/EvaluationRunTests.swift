import Editing
import Foundation
import ModelFormats
import Models
import Testing

@testable import Evaluation

/// End-to-end runs of the harness on the tiny Llama (ModelsTests' fixture, read in place).
@Suite(.serialized) struct EvaluationRunTests {
    static let tinyLlama = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ModelsTests/Fixtures/tiny-llama")

    func dataset() -> Dataset {
        let cases = (0..<6).map { i in
            EvalCase(
                id: "c\(i)", kind: .custom,
                requests: [EditRequest(prompt: "{} lives in", subject: "Person \(i)", targetNew: "city \(i)", targetTrue: "town")],
                probes: [
                    Probe(role: .reliability, prompt: "Person \(i) lives in", target: "city \(i)"),
                    Probe(role: .rewrite, prompt: "Person \(i) lives in", target: "city \(i)", alternative: "town"),
                    Probe(role: .generality, prompt: "The home of Person \(i) is", target: "city \(i)"),
                    Probe(role: .locality, prompt: "The sky is", target: "blue"),
                ])
        }
        return Dataset(kind: .custom, format: "ibke-jsonl", path: "test.jsonl", sha256: "test-\(cases.count)", cases: cases)
    }

    func editor(_ model: LanguageModel) -> FineTuning {
        var h = FineTuning.Hyperparameters.defaults(.targetNew, layerCount: model.config.layerCount)
        h.learningRate = 1e-2
        return FineTuning(name: "ft-m", hyperparameters: h)
    }

    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("ibke-run-\(UUID().uuidString)")
    }

    @Test func singleRunWritesEverythingAndLeavesTheModelUnchanged() throws {
        let model = try LanguageModel.load(Self.tinyLlama)
        let before = model.transformer.weights.blocks.map(\.feedForwardDown.scalars)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EvaluationOptions()
        options.cacheDirectory = dir.appendingPathComponent("cache")
        let run = try EvaluationRun(model: model, dataset: dataset(), editors: [editor(model)], options: options, directory: dir)
        let summary = try run.run()
        #expect(model.transformer.weights.blocks.map(\.feedForwardDown.scalars) == before)
        for name in ["params.json", "summary.json", "summary.md"] {
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path), "\(name)")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("cases/ft-m").path)
        #expect(files.sorted() == (0..<6).map { "c\($0).json" })
        let m = try #require(summary.methods.first)
        #expect(m.cases == 6)
        // The edit works, the pre-edit model does not know the targets, locality pre-edit is 1.
        #expect(m.metrics["reliability"]! > m.preMetrics["reliability"]!)
        #expect(m.metrics["efficacy_score"]! >= 0.8)
        #expect(m.preMetrics["locality"] == 1)
        #expect(m.metrics["locality"] != nil)
        #expect(summary.metricInfo.map(\.name).contains("efficacy_score"))
        #expect(try RunSummary.load(runDirectory: dir).methods[0].metrics == m.metrics)
        // The pre-edit cache was written and is reused (same outcomes) by a second run.
        let cache = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("cache/pre-edit").path)
        #expect(cache.count == 1)
    }

    @Test func resumeSkipsFinishedCasesAndRefusesAChangedRun() throws {
        let model = try LanguageModel.load(Self.tinyLlama)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EvaluationOptions()
        options.editProtocol = .batch(2)
        try EvaluationRun(model: model, dataset: dataset(), editors: [editor(model)], options: options, directory: dir).run()
        let casesDir = dir.appendingPathComponent("cases/ft-m")
        // Simulate a run killed after the first batch: later files gone, a finished file marked.
        try FileManager.default.removeItem(at: casesDir.appendingPathComponent("c4.json"))
        try FileManager.default.removeItem(at: dir.appendingPathComponent("summary.json"))
        let marked = casesDir.appendingPathComponent("c0.json")
        var text = try String(contentsOf: marked, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"batch\":0", with: "\"batch\":0,\"marker\":1")
        try text.write(to: marked, atomically: true, encoding: .utf8)

        // Without --resume the directory is refused.
        #expect(throws: RunError.self) {
            try EvaluationRun(model: model, dataset: dataset(), editors: [editor(model)], options: options, directory: dir).run()
        }
        // With a different protocol, resuming is refused.
        var other = options
        other.resume = true
        other.editProtocol = .single
        #expect(throws: RunError.self) {
            try EvaluationRun(model: model, dataset: dataset(), editors: [editor(model)], options: other, directory: dir).run()
        }
        options.resume = true
        let summary = try EvaluationRun(model: model, dataset: dataset(), editors: [editor(model)], options: options, directory: dir).run()
        #expect(summary.methods[0].cases == 6)
        #expect(FileManager.default.fileExists(atPath: casesDir.appendingPathComponent("c4.json").path))
        #expect(try String(contentsOf: marked, encoding: .utf8).contains("\"marker\":1"), "finished case was redone")
    }

    @Test func sequentialRunDrawsACurveAndRevertsAtTheEnd() throws {
        let model = try LanguageModel.load(Self.tinyLlama)
        let before = model.transformer.weights.blocks.map(\.feedForwardDown.scalars)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EvaluationOptions()
        options.editProtocol = .sequential(2)
        options.evaluateEvery = 2
        let summary = try EvaluationRun(model: model, dataset: dataset(), editors: [editor(model)], options: options, directory: dir).run()
        #expect(summary.methods[0].curve.map(\.edits) == [2, 4, 6])
        #expect(summary.settings.protocolKind == "sequential" && summary.settings.batchSize == 2)
        #expect(model.transformer.weights.blocks.map(\.feedForwardDown.scalars) == before)
    }

    @Test func invalidRequestsAreRecordedNotFatal() throws {
        let model = try LanguageModel.load(Self.tinyLlama)
        var data = dataset()
        data.cases[1].requests[0].prompt = "Person 1 lives in"
        data.cases[1].requests[0].subject = "Nobody"  // not in the prompt
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let summary = try EvaluationRun(
            model: model, dataset: data, editors: [editor(model)], options: EvaluationOptions(),
            directory: dir
        ).run()
        #expect(summary.methods[0].cases == 5)
        let failed = try JSONDecoder().decode(CaseResult.self, from: Data(contentsOf: dir.appendingPathComponent("cases/ft-m/c1.json")))
        #expect(failed.error?.contains("does not occur in the prompt") == true)
    }

    /// FT-M that counts `commit` calls and reports a statistics label.
    final class CountingEditor: Editor, @unchecked Sendable {
        let inner: FineTuning
        var commits: [[String]] = []
        var failCommitOnce = false
        init(_ inner: FineTuning) { self.inner = inner }
        var name: String { inner.name }
        var hyperparameters: JSONValue { inner.hyperparameters }
        var statistics: EditorStatistics { .labelled("test statistics, 7 tokens") }
        func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
            try inner.edit(requests, in: model)
        }
        func commit(_ requests: [PreparedRequest], in model: LanguageModel) throws {
            if failCommitOnce {
                failCommitOnce = false
                throw RunError.invalidArgument("commit refused")
            }
            commits.append(requests.map(\.request.subject))
        }
    }

    @Test func sequentialRunsCommitEachBatchAndRecordTheStatistics() throws {
        let model = try LanguageModel.load(Self.tinyLlama)
        let before = model.transformer.weights.blocks.map(\.feedForwardDown.scalars)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EvaluationOptions()
        options.editProtocol = .sequential(4)
        let editor = CountingEditor(editor(model))
        editor.failCommitOnce = true
        let run = try EvaluationRun(model: model, dataset: dataset(), editors: [editor], options: options, directory: dir)
        var warnings: [String] = []
        run.warning = { warnings.append($0) }
        let summary = try run.run()
        #expect(warnings == ["ft-m: 4 of 6 cases could not be edited, e.g. commit refused"], "\(warnings)")
        // Batches of 4 and 2: the first commit fails (its cases are recorded as failed, its delta
        // reverted), the second is committed after its delta was applied.
        #expect(editor.commits == [["Person 4", "Person 5"]])
        #expect(summary.methods[0].cases == 2)
        let failed = try JSONDecoder().decode(CaseResult.self, from: Data(contentsOf: dir.appendingPathComponent("cases/ft-m/c0.json")))
        #expect(failed.error?.contains("commit refused") == true)
        #expect(summary.methods[0].statistics == "test statistics, 7 tokens")
        #expect(try RunSummary.load(runDirectory: dir).methods[0].statistics == "test statistics, 7 tokens")
        let params = try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent("params.json")))
        #expect(params.objectValue?["methods"]?.arrayValue?.first?.objectValue?["statistics"] == .string("test statistics, 7 tokens"))
        #expect(model.transformer.weights.blocks.map(\.feedForwardDown.scalars) == before)

        // Single and batch protocols revert every edit: nothing is committed.
        let other = CountingEditor(self.editor(model))
        var batch = EvaluationOptions()
        batch.editProtocol = .batch(3)
        let batchDir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: batchDir) }
        try EvaluationRun(model: model, dataset: dataset(), editors: [other], options: batch, directory: batchDir).run()
        #expect(other.commits.isEmpty)
    }

    @Test func protocolsParse() throws {
        #expect(try EditProtocol(parsing: "single") == .single)
        #expect(try EditProtocol(parsing: "batch:10") == .batch(10))
        #expect(try EditProtocol(parsing: "sequential:5") == .sequential(5))
        for bad in ["batch", "batch:0", "sequential:x", "multi"] {
            #expect(throws: RunError.self) { try EditProtocol(parsing: bad) }
        }
    }

    /// Known facts whose attribute is what the tiny model itself answers, so every one is known;
    /// the run records their retention per case and the selection in the run directory.
    @Test func knownFactRetentionIsMeasuredAfterEveryEdit() throws {
        let model = try LanguageModel.load(Self.tinyLlama)
        let prompts = ["The sky is", "Water is", "My friend lives in", "The capital is"]
        let answers = try model.greedyContinuations(prompts.map { model.encode($0) }, maxTokens: 1, stopTokens: [])
        let candidates = zip(prompts, answers).enumerated().map { i, pair in
            KnownFact(id: "k\(i)", subject: "s\(i)", prompt: pair.0, attribute: model.tokenizer.decode(pair.1, skipSpecialTokens: true))
        }
        // Those the model completes as the retention measure does (some tokens are partial characters).
        let facts = try KnownFactRetention(model: model, facts: candidates).known.map(\.fact)
        try #require(!facts.isEmpty)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = EvaluationOptions()
        options.cacheDirectory = dir.appendingPathComponent("cache")
        options.knownFacts = KnownFactsFile(path: "knowns.json", sha256: "test", facts: facts)
        let summary = try EvaluationRun(
            model: model, dataset: dataset(), editors: [editor(model)], options: options,
            directory: dir
        ).run()
        let retention = try #require(summary.methods[0].metrics["known_retention"])
        #expect(retention >= 0 && retention <= 1)
        #expect(summary.methods[0].preMetrics["known_retention"] == nil)
        let known = try JSONDecoder().decode(
            [KnownFactRetention.Baseline].self,
            from: Data(contentsOf: dir.appendingPathComponent("known-facts.json")))
        #expect(known.map(\.fact) == facts)
        let result = try JSONDecoder().decode(CaseResult.self, from: Data(contentsOf: dir.appendingPathComponent("cases/ft-m/c0.json")))
        let changed = try #require(result.knownChanged)
        #expect(abs(result.metrics["known_retention"]! - Double(facts.count - changed.count) / Double(facts.count)) < 1e-12)
        let params = try String(contentsOf: dir.appendingPathComponent("params.json"), encoding: .utf8)
        #expect(params.contains("\"known_facts\""))
    }
}
