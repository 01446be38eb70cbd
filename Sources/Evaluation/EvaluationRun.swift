import Editing
import Foundation
import ModelFormats
import Models

/// How edits are grouped and when they are measured (METHODS.md §9).
public enum EditProtocol: Sendable, Equatable, CustomStringConvertible {
    /// Each case edited alone, evaluated, then reverted.
    case single
    /// Cases edited `n` at a time (one editor call), evaluated, then reverted.
    case batch(Int)
    /// Batches of `n` applied one after another without reverting; evaluated at the end (and
    /// along the way for the curve).
    case sequential(Int)

    /// Parses `single`, `batch:N`, `sequential:N`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let n = parts.count == 2 ? Int(parts[1]) : nil
        switch (parts[0], n) {
        case ("single", _) where parts.count == 1: self = .single
        case ("batch", let n?) where n >= 1: self = .batch(n)
        case ("sequential", let n?) where n >= 1: self = .sequential(n)
        default: throw RunError.invalidProtocol(text)
        }
    }

    public var name: String {
        switch self {
        case .single: "single"
        case .batch: "batch"
        case .sequential: "sequential"
        }
    }

    public var batchSize: Int {
        switch self {
        case .single: 1
        case .batch(let n), .sequential(let n): n
        }
    }

    public var description: String { self == .single ? "single" : "\(name):\(batchSize)" }
}

/// Options of an evaluation run beyond the dataset and the methods.
public struct EvaluationOptions: Sendable {
    public var editProtocol: EditProtocol = .single
    /// Sequential runs: evaluate the cases edited so far every this many cases (0: at the end only).
    public var evaluateEvery = 0
    public var topK = 1
    public var chatTemplate = false
    /// Greedy tokens generated per answer probe for generation-based metrics (0: off).
    public var generationTokens = 0
    public var zsreTarget = ZsRETarget.alt
    public var seed: UInt64 = 42
    public var resume = false
    /// Where pre-edit results are cached across runs (nil: in the run directory only).
    public var cacheDirectory: URL?
    /// Facts whose retention is measured after every edit (`known_retention`), when given.
    public var knownFacts: KnownFactsFile?

    public init() {}
}

/// Where a run is, for progress display.
public struct RunProgress: Sendable {
    public var phase: String
    public var done: Int
    public var total: Int
}

/// The result file of one case under one method (`cases/METHOD/ID.json`).
public struct CaseResult: Sendable, Codable {
    public var caseID: String
    public var method: String
    public var requests: [EditRequest]
    /// Index of the batch the case was edited in.
    public var batch: Int
    public var editSeconds: Double
    public var evaluationSeconds: Double
    public var metrics: [String: Double]
    public var preMetrics: [String: Double]
    /// Frobenius norm of the update of each edited matrix.
    public var deltaNorms: [String: Double]
    public var probes: [ProbeOutcome]
    /// Why the case could not be edited (its metrics are then empty and it is not averaged).
    public var error: String?
    /// With known facts: the ids of those whose greedy answer the edited model changed.
    public var knownChanged: [String]?

    enum CodingKeys: String, CodingKey {
        case caseID = "case_id"
        case method, requests, batch
        case editSeconds = "edit_seconds"
        case evaluationSeconds = "evaluation_seconds"
        case metrics
        case preMetrics = "pre_metrics"
        case deltaNorms = "delta_norms"
        case probes, error
        case knownChanged = "known_changed"
    }
}

/// One `ibke eval` run: edits every case of a dataset with each method under a protocol,
/// measures them, and writes the run directory:
///
/// - `params.json`: model hash, dataset, settings, methods and hyperparameters, seed, versions;
/// - `cases/METHOD/ID.json`: one file per case, written atomically as soon as it is done;
/// - `summary.json`, `summary.md`: the averages, pre- and post-edit.
///
/// With `resume`, finished cases (whole batches) are read back instead of redone; the run's
/// parameters must match. Pre-edit outcomes are computed once per model, dataset and settings
/// and cached.
public final class EvaluationRun {
    public let model: LanguageModel
    public let dataset: Dataset
    public let editors: [any Editor]
    public let options: EvaluationOptions
    public let directory: URL
    public var progress: ((RunProgress) -> Void)?
    /// Told what the caller should know but the summary does not say (cases that could not be
    /// edited); nothing is printed by the run itself.
    public var warning: ((String) -> Void)?
    /// Extra fields for params.json (git commit, versions), from the caller.
    public var provenance: [String: String] = [:]

    private let scorer: ProbeScorer
    private var settings: EvaluationSettings
    /// The known facts of the unedited model, once selected.
    private var retention: KnownFactRetention?

    public init(
        model: LanguageModel, dataset: Dataset, editors: [any Editor], options: EvaluationOptions,
        directory: URL
    ) throws {
        self.model = model
        self.dataset = dataset
        self.editors = editors
        self.options = options
        self.directory = directory
        var chat: ChatTemplate?
        if options.chatTemplate {
            guard let source = model.tokenizer.chatTemplate, let template = ChatTemplate(template: source) else {
                throw RunError.noChatTemplate(model: model.url.lastPathComponent)
            }
            chat = template
        }
        scorer = ProbeScorer(model: model, chatTemplate: chat, generationTokens: options.generationTokens)
        let family: String =
            switch dataset.kind {
            case .zsre: "zsre-token-accuracy"
            case .counterfact: "counterfact-probability"
            case .mquake: "mquake"
            case .custom: "custom"
            }
        settings = EvaluationSettings(
            metricFamily: family, protocolKind: options.editProtocol.name, batchSize: options.editProtocol.batchSize,
            evaluateEvery: options.evaluateEvery, topK: options.topK, chatTemplate: options.chatTemplate,
            generation: options.generationTokens > 0, zsreTarget: options.zsreTarget, seed: options.seed)
        guard options.topK >= 1 else { throw RunError.invalidArgument("top-k must be at least 1") }
        let names = editors.map(\.name)
        guard Set(names).count == names.count else {
            throw RunError.invalidArgument("a method is listed twice: \(names.joined(separator: ","))")
        }
    }

    // MARK: Running

    /// Runs (or resumes) every method and writes the summary.
    @discardableResult
    public func run() throws -> RunSummary {
        let modelHash = try model.contentHash()
        if let file = options.knownFacts {
            report("known facts", done: 0, total: file.facts.count)
            retention = try KnownFactRetention(model: model, facts: file.facts)
        }
        try prepareDirectory(modelHash: modelHash)
        if let retention {
            try write(try JSONEncoder.sorted.encode(retention.known), to: directory.appendingPathComponent("known-facts.json"))
        }
        let pre = try preEditOutcomes(modelHash: modelHash)
        for editor in editors {
            switch options.editProtocol {
            case .single, .batch: try runReverting(editor, pre: pre)
            case .sequential: try runSequential(editor, pre: pre)
            }
        }
        let summary = try summarize(modelHash: modelHash)
        try write(try summary.encoded(), to: directory.appendingPathComponent("summary.json"))
        try write(Data(SummaryTable.markdown([summary]).utf8), to: directory.appendingPathComponent("summary.md"))
        return summary
    }

    /// Single and batch protocols: edit a batch, evaluate its cases, revert.
    private func runReverting(_ editor: any Editor, pre: [String: [ProbeOutcome]]) throws {
        let batches = batches()
        for (index, batch) in batches.enumerated() {
            report(editor.name, done: index, total: batches.count)
            if options.resume && batch.allSatisfy({ FileManager.default.fileExists(atPath: caseURL(editor, $0).path) }) {
                continue
            }
            let (prepared, failures) = prepare(batch)
            for (c, message) in failures {
                try save(failedResult(c, editor: editor, batch: index, error: message, pre: pre))
            }
            let cases = batch.filter { c in !failures.contains { $0.0.id == c.id } }
            guard !cases.isEmpty else { continue }
            let start = Date()
            let applied: AppliedDelta
            var applySeconds = 0.0
            do {
                let delta = try editor.edit(prepared, in: model)
                let applyStart = Date()
                applied = try model.transformer.apply(delta, source: editor.name)
                applySeconds = Date().timeIntervalSince(applyStart)
            } catch {
                for c in cases { try save(failedResult(c, editor: editor, batch: index, error: "\(error)", pre: pre)) }
                continue
            }
            // The editor's own time, and the harness's share (applying the delta) counted with the evaluation.
            let editSeconds = (Date().timeIntervalSince(start) - applySeconds) / Double(cases.count)
            let norms = applied.delta.norms()
            defer { applied.revert() }
            let known = try measureKnownFacts(after: cases)
            for c in cases {
                var result = try evaluate(
                    c, editor: editor, batch: index, editSeconds: editSeconds, norms: norms, pre: pre,
                    known: known)
                result.evaluationSeconds += applySeconds / Double(cases.count)
                try save(result)
            }
        }
        report(editor.name, done: batches.count, total: batches.count)
    }

    /// Sequential protocol: batches applied one after another; the curve every
    /// `evaluateEvery` cases; every case evaluated on the final model. An interrupted
    /// sequence is redone from the start on resume (the edited model is not checkpointed).
    private func runSequential(_ editor: any Editor, pre: [String: [ProbeOutcome]]) throws {
        let all = dataset.cases
        if options.resume && all.allSatisfy({ FileManager.default.fileExists(atPath: caseURL(editor, $0).path) }) { return }
        let batches = batches()
        var applied: [AppliedDelta] = []
        defer { for a in applied.reversed() { a.revert() } }
        var edited: [EvalCase] = []
        var editSeconds: [String: Double] = [:]
        var batchOf: [String: Int] = [:]
        var errors: [String: String] = [:]
        var curve: [CurvePoint] = []
        var nextCurvePoint = options.evaluateEvery
        for (index, batch) in batches.enumerated() {
            report(editor.name + " (editing)", done: index, total: batches.count)
            let (prepared, failures) = prepare(batch)
            for (c, message) in failures { errors[c.id] = message }
            let cases = batch.filter { errors[$0.id] == nil }
            for c in batch { batchOf[c.id] = index }
            guard !cases.isEmpty else { continue }
            let start = Date()
            do {
                let delta = try editor.edit(prepared, in: model)
                let handle = try model.transformer.apply(delta, source: editor.name)
                do {
                    // The editor learns that its edit is now part of the model (AlphaEdit's key cache).
                    try editor.commit(prepared, in: model)
                } catch {
                    handle.revert()
                    throw error
                }
                applied.append(handle)
                for c in cases { editSeconds[c.id] = Date().timeIntervalSince(start) / Double(cases.count) }
                edited += cases
            } catch {
                for c in cases { errors[c.id] = "\(error)" }
            }
            if options.evaluateEvery > 0 && edited.count >= nextCurvePoint && index + 1 < batches.count {
                let metrics = try edited.map { Metrics.caseMetrics(try scorer.score($0.probes), pre: pre[$0.id]!, topK: options.topK) }
                curve.append(CurvePoint(edits: edited.count, metrics: Metrics.aggregate(metrics)))
                while nextCurvePoint <= edited.count { nextCurvePoint += options.evaluateEvery }
            }
        }
        var finalMetrics: [[String: Double]] = []
        let known = try measureKnownFacts(after: edited)
        for (i, c) in all.enumerated() {
            report(editor.name + " (final evaluation)", done: i, total: all.count)
            if let message = errors[c.id] {
                try save(failedResult(c, editor: editor, batch: batchOf[c.id] ?? 0, error: message, pre: pre))
                continue
            }
            let result = try evaluate(
                c, editor: editor, batch: batchOf[c.id] ?? 0, editSeconds: editSeconds[c.id] ?? 0,
                norms: [:], pre: pre, known: known)
            finalMetrics.append(result.metrics)
            try save(result)
        }
        if !edited.isEmpty { curve.append(CurvePoint(edits: edited.count, metrics: Metrics.aggregate(finalMetrics))) }
        let curveData = try JSONEncoder.sorted.encode(curve)
        try write(curveData, to: methodDirectory(editor).appendingPathComponent("curve.json"))
    }

    /// Known-fact retention of the model as it stands, the facts about `cases`' subjects left out.
    private func measureKnownFacts(after cases: [EvalCase]) throws -> (retention: Double, changed: [String])? {
        try retention?.measure(model: model, editedSubjects: Set(cases.flatMap { $0.requests.map(\.subject) }))
    }

    /// Probes of one case on the model as it stands; `known`, the model's known-fact retention.
    private func evaluate(
        _ c: EvalCase, editor: any Editor, batch: Int, editSeconds: Double, norms: [ParameterID: Double],
        pre: [String: [ProbeOutcome]], known: (retention: Double, changed: [String])?
    ) throws -> CaseResult {
        let start = Date()
        let outcomes = try scorer.score(c.probes)
        let seconds = Date().timeIntervalSince(start)
        let preOutcomes = pre[c.id]!
        var metrics = Metrics.caseMetrics(outcomes, pre: preOutcomes, topK: options.topK)
        if let known { metrics["known_retention"] = known.retention }
        return CaseResult(
            caseID: c.id, method: editor.name, requests: c.requests, batch: batch, editSeconds: editSeconds,
            evaluationSeconds: seconds, metrics: metrics,
            preMetrics: Metrics.caseMetrics(preOutcomes, pre: preOutcomes, topK: options.topK),
            deltaNorms: Dictionary(uniqueKeysWithValues: norms.map { ($0.key.name, $0.value) }),
            probes: outcomes, error: nil, knownChanged: known?.changed)
    }

    private func failedResult(
        _ c: EvalCase, editor: any Editor, batch: Int, error: String,
        pre: [String: [ProbeOutcome]]
    ) -> CaseResult {
        let preOutcomes = pre[c.id] ?? []
        return CaseResult(
            caseID: c.id, method: editor.name, requests: c.requests, batch: batch, editSeconds: 0,
            evaluationSeconds: 0, metrics: [:],
            preMetrics: Metrics.caseMetrics(preOutcomes, pre: preOutcomes, topK: options.topK),
            deltaNorms: [:], probes: [], error: error)
    }

    /// Tokenised requests of a batch, and the cases whose requests are invalid for this model.
    private func prepare(_ batch: [EvalCase]) -> ([PreparedRequest], [(EvalCase, String)]) {
        var prepared: [PreparedRequest] = []
        var failures: [(EvalCase, String)] = []
        for c in batch {
            do {
                prepared += try c.requests.enumerated().map { try $1.prepared(for: model, index: $0) }
            } catch {
                failures.append((c, "case \(c.id): \(error)"))
            }
        }
        return (prepared, failures)
    }

    private func batches() -> [[EvalCase]] {
        let n = options.editProtocol.batchSize
        return stride(from: 0, to: dataset.cases.count, by: n).map { Array(dataset.cases[$0..<min(dataset.cases.count, $0 + n)]) }
    }

    private func report(_ phase: String, done: Int, total: Int) {
        progress?(RunProgress(phase: phase, done: done, total: total))
    }

    // MARK: Pre-edit outcomes

    /// Pre-edit outcomes of every case, from the cache where present; the rest computed in
    /// batches of cases and added to the cache.
    private func preEditOutcomes(modelHash: String) throws -> [String: [ProbeOutcome]] {
        let key = preEditKey(modelHash: modelHash)
        let cacheURL = (options.cacheDirectory ?? directory).appendingPathComponent("pre-edit/\(key).json")
        var cache = PreEditCache(modelSHA256: modelHash, datasetSHA256: dataset.sha256, cases: [:])
        if let data = try? Data(contentsOf: cacheURL), let cached = try? JSONDecoder().decode(PreEditCache.self, from: data),
            cached.modelSHA256 == modelHash, cached.datasetSHA256 == dataset.sha256
        {
            cache = cached
        }
        let missing = dataset.cases.filter { cache.cases[$0.id]?.count != $0.probes.count }
        let group = 16
        for start in stride(from: 0, to: missing.count, by: group) {
            report("pre-edit", done: start, total: missing.count)
            let cases = missing[start..<min(missing.count, start + group)]
            let outcomes = try scorer.score(cases.flatMap(\.probes))
            var next = 0
            for c in cases {
                cache.cases[c.id] = Array(outcomes[next..<(next + c.probes.count)])
                next += c.probes.count
            }
        }
        if !missing.isEmpty {
            report("pre-edit", done: missing.count, total: missing.count)
            try FileManager.default.createDirectory(at: cacheURL.deletingLastPathComponent(), withIntermediateDirectories: true)
            try write(try JSONEncoder.sorted.encode(cache), to: cacheURL)
        }
        return cache.cases
    }

    /// What pre-edit outcomes depend on: model, dataset file, and the settings that change
    /// tokens or scoring.
    private func preEditKey(modelHash: String) -> String {
        let text = [
            modelHash, dataset.sha256, dataset.kind.rawValue, options.zsreTarget.rawValue, "\(options.chatTemplate)",
            "\(options.generationTokens)",
        ].joined(separator: "|")
        return String(Data(text.utf8).withUnsafeBytes { SHA256.hex($0) }.prefix(24))
    }

    // MARK: Files

    private func prepareDirectory(modelHash: String) throws {
        let fm = FileManager.default
        let paramsURL = directory.appendingPathComponent("params.json")
        let params = parameters(modelHash: modelHash)
        if fm.fileExists(atPath: paramsURL.path) {
            guard options.resume else {
                throw RunError.runExists(directory.path)
            }
            let data = try Data(contentsOf: paramsURL)
            guard let old = try? JSONValue.parse(data).objectValue else {
                throw RunError.unreadable(file: paramsURL.path, detail: "not a JSON object")
            }
            for key in ["model_sha256", "dataset_sha256", "dataset_kind", "cases", "settings", "methods"]
            where old[key] != params[key] {
                throw RunError.mismatch(
                    file: paramsURL.path,
                    detail:
                        "`\(key)` differs from this invocation's; resume with the same model, dataset, number of cases, settings and methods"
                )
            }
            return
        }
        if options.resume { throw RunError.noRunToResume(directory.path) }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        try write(Data(JSONValue.object(params).serialized().utf8), to: paramsURL)
    }

    private func parameters(modelHash: String) -> JSONObject {
        var settingsObject: JSONObject = [
            "protocol": .string(settings.protocolKind), "batch_size": .int(settings.batchSize),
            "evaluate_every": .int(settings.evaluateEvery), "top_k": .int(settings.topK),
            "chat_template": .bool(settings.chatTemplate), "generation_tokens": .int(options.generationTokens),
            "zsre_target": .string(settings.zsreTarget.rawValue), "metric_family": .string(settings.metricFamily),
        ]
        settingsObject.updateValue(.int(Int(truncatingIfNeeded: settings.seed)), forKey: "seed")
        if let file = options.knownFacts, let retention {
            settingsObject.updateValue(
                .object([
                    "path": .string(file.path), "sha256": .string(file.sha256), "tried": .int(retention.tried),
                    "known": .int(retention.known.count),
                ]), forKey: "known_facts")
        }
        var object: JSONObject = [
            "model_path": .string(model.url.path), "model_sha256": .string(modelHash),
            "dataset_kind": .string(dataset.kind.rawValue), "dataset_format": .string(dataset.format),
            "dataset_path": .string(dataset.path), "dataset_sha256": .string(dataset.sha256),
            "cases": .int(dataset.cases.count), "settings": .object(settingsObject),
            "methods": .array(
                editors.map {
                    .object([
                        "method": .string($0.name), "hyperparameters": $0.hyperparameters, "statistics": .string($0.statistics.description),
                    ])
                }),
        ]
        for (key, value) in provenance.sorted(by: { $0.key < $1.key }) { object.updateValue(.string(value), forKey: key) }
        return object
    }

    private func methodDirectory(_ editor: any Editor) -> URL {
        directory.appendingPathComponent("cases").appendingPathComponent(Self.fileName(editor.name))
    }

    private func caseURL(_ editor: any Editor, _ c: EvalCase) -> URL {
        methodDirectory(editor).appendingPathComponent(Self.fileName(c.id) + ".json")
    }

    private func save(_ result: CaseResult) throws {
        let editor = editors.first { $0.name == result.method }!
        let c = dataset.cases.first { $0.id == result.caseID }!
        try FileManager.default.createDirectory(at: methodDirectory(editor), withIntermediateDirectories: true)
        try write(try JSONEncoder.sorted.encode(result), to: caseURL(editor, c))
    }

    /// Writes through a temporary file and a rename (``AtomicFile``): a killed run leaves whole
    /// files only.
    private func write(_ data: Data, to url: URL) throws {
        try AtomicFile.write(data, to: url) { RunError.unreadable(file: url.path, detail: "cannot write (\($0))") }
    }

    /// A file-name-safe form of a case id or method name.
    static func fileName(_ text: String) -> String {
        String(text.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    // MARK: Summary

    private func summarize(modelHash: String) throws -> RunSummary {
        var methods: [MethodSummary] = []
        var names = Set<String>()
        for editor in editors {
            var results: [CaseResult] = []
            for c in dataset.cases {
                let url = caseURL(editor, c)
                guard let data = try? Data(contentsOf: url), let result = try? JSONDecoder().decode(CaseResult.self, from: data) else {
                    throw RunError.unreadable(file: url.path, detail: "missing or unreadable case result")
                }
                results.append(result)
            }
            let done = results.filter { $0.error == nil }
            let metrics = Metrics.aggregate(done.map(\.metrics))
            let preMetrics = Metrics.aggregate(results.map(\.preMetrics))
            names.formUnion(metrics.keys)
            names.formUnion(preMetrics.keys)
            var curve: [CurvePoint] = []
            if let data = try? Data(contentsOf: methodDirectory(editor).appendingPathComponent("curve.json")) {
                curve = (try? JSONDecoder().decode([CurvePoint].self, from: data)) ?? []
            }
            let mean = { (values: [Double]) in values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }
            methods.append(
                MethodSummary(
                    method: editor.name, hyperparameters: editor.hyperparameters, statistics: editor.statistics.description,
                    cases: done.count,
                    metrics: metrics, preMetrics: preMetrics, editSecondsMean: mean(done.map(\.editSeconds)),
                    evaluationSecondsMean: mean(done.map(\.evaluationSeconds)), curve: curve))
            if done.count < results.count {
                let failed = results.filter { $0.error != nil }
                warning?("\(editor.name): \(failed.count) of \(results.count) cases could not be edited, e.g. \(failed[0].error!)")
            }
        }
        return RunSummary(
            run: directory.lastPathComponent, modelPath: model.url.path, modelSHA256: modelHash,
            datasetKind: dataset.kind.rawValue, datasetFormat: dataset.format, datasetPath: dataset.path,
            settings: settings, metricInfo: Metrics.info(for: names, settings: settings), methods: methods,
            created: ISO8601DateFormatter().string(from: Date()))
    }
}

/// The cached pre-edit outcomes of a dataset's cases on one model.
struct PreEditCache: Codable {
    var modelSHA256: String
    var datasetSHA256: String
    var cases: [String: [ProbeOutcome]]

    enum CodingKeys: String, CodingKey {
        case modelSHA256 = "model_sha256"
        case datasetSHA256 = "dataset_sha256"
        case cases
    }
}

extension JSONEncoder {
    /// Sorted keys, so result files diff cleanly.
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
