import Foundation
import ModelFormats

/// How a metric value was measured, shown next to it in every report: the field's
/// incomparable numbers come from metrics that silently differ (METHODS.md §10).
public struct MetricInfo: Sendable, Codable, Hashable {
    /// Key in ``MethodSummary/metrics`` (`reliability`, `efficacy_score`, …).
    public var name: String
    /// Column header (`Rel.`, `ES`, …).
    public var label: String
    /// One line: what is compared with what (`token accuracy of alt on src, teacher-forced, top-1`).
    public var definition: String

    public init(name: String, label: String, definition: String) {
        self.name = name
        self.label = label
        self.definition = definition
    }
}

/// The measurement settings of a run (recorded in params.json and summary.json).
public struct EvaluationSettings: Sendable, Codable, Hashable {
    /// `zsre-token-accuracy`, `counterfact-probability`, `mquake`, `custom`.
    public var metricFamily: String
    /// `single`, `batch`, `sequential`.
    public var protocolKind: String
    /// Edits per batch (1 for single).
    public var batchSize: Int
    /// Sequential runs: evaluate every this many edits (0: only at the end).
    public var evaluateEvery: Int
    /// Top-k for accuracy (1: argmax).
    public var topK: Int
    public var chatTemplate: Bool
    /// Whether generation-based metrics (greedy, normalised exact match; fluency) were computed.
    public var generation: Bool
    /// zsRE: which field is the new target (`alt`, as EasyEdit/MEND; or `answers[0]`, as ROME/MEMIT).
    public var zsreTarget: ZsRETarget
    public var seed: UInt64

    public init(
        metricFamily: String, protocolKind: String, batchSize: Int, evaluateEvery: Int, topK: Int,
        chatTemplate: Bool, generation: Bool, zsreTarget: ZsRETarget, seed: UInt64
    ) {
        self.metricFamily = metricFamily
        self.protocolKind = protocolKind
        self.batchSize = batchSize
        self.evaluateEvery = evaluateEvery
        self.topK = topK
        self.chatTemplate = chatTemplate
        self.generation = generation
        self.zsreTarget = zsreTarget
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case metricFamily = "metric_family"
        case protocolKind = "protocol"
        case batchSize = "batch_size"
        case evaluateEvery = "evaluate_every"
        case topK = "top_k"
        case chatTemplate = "chat_template"
        case generation
        case zsreTarget = "zsre_target"
        case seed
    }
}

/// Metrics after a number of sequential edits (one point of a curve).
public struct CurvePoint: Sendable, Codable, Hashable {
    public var edits: Int
    public var metrics: [String: Double]

    public init(edits: Int, metrics: [String: Double]) {
        self.edits = edits
        self.metrics = metrics
    }
}

/// One method's results in a run.
public struct MethodSummary: Sendable, Codable {
    public var method: String
    public var hyperparameters: JSONValue
    /// How the method's statistics were obtained (`none`, or the covariance cache key).
    public var statistics: String
    public var cases: Int
    /// Post-edit means, fractions in [0, 1] (fluency in bits); reports show ×100.
    public var metrics: [String: Double]
    /// The unedited model's values of the same metrics.
    public var preMetrics: [String: Double]
    public var editSecondsMean: Double
    public var evaluationSecondsMean: Double
    /// Sequential protocol: metrics over the edits made so far, every `evaluate_every` edits.
    public var curve: [CurvePoint]

    public init(
        method: String, hyperparameters: JSONValue, statistics: String, cases: Int,
        metrics: [String: Double], preMetrics: [String: Double], editSecondsMean: Double,
        evaluationSecondsMean: Double, curve: [CurvePoint]
    ) {
        self.method = method
        self.hyperparameters = hyperparameters
        self.statistics = statistics
        self.cases = cases
        self.metrics = metrics
        self.preMetrics = preMetrics
        self.editSecondsMean = editSecondsMean
        self.evaluationSecondsMean = evaluationSecondsMean
        self.curve = curve
    }

    enum CodingKeys: String, CodingKey {
        case method, hyperparameters, statistics, cases, metrics
        case preMetrics = "pre_metrics"
        case editSecondsMean = "edit_seconds_mean"
        case evaluationSecondsMean = "evaluation_seconds_mean"
        case curve
    }
}

/// `summary.json` of a run directory: what `ibke report` reads.
public struct RunSummary: Sendable, Codable {
    public var run: String
    public var modelPath: String
    public var modelSHA256: String
    public var datasetKind: String
    public var datasetFormat: String
    public var datasetPath: String
    public var settings: EvaluationSettings
    /// The metrics in display order, with their labels and definitions.
    public var metricInfo: [MetricInfo]
    public var methods: [MethodSummary]
    /// ISO 8601.
    public var created: String

    public init(
        run: String, modelPath: String, modelSHA256: String, datasetKind: String, datasetFormat: String,
        datasetPath: String, settings: EvaluationSettings, metricInfo: [MetricInfo], methods: [MethodSummary],
        created: String
    ) {
        self.run = run
        self.modelPath = modelPath
        self.modelSHA256 = modelSHA256
        self.datasetKind = datasetKind
        self.datasetFormat = datasetFormat
        self.datasetPath = datasetPath
        self.settings = settings
        self.metricInfo = metricInfo
        self.methods = methods
        self.created = created
    }

    enum CodingKeys: String, CodingKey {
        case run
        case modelPath = "model_path"
        case modelSHA256 = "model_sha256"
        case datasetKind = "dataset_kind"
        case datasetFormat = "dataset_format"
        case datasetPath = "dataset_path"
        case settings
        case metricInfo = "metric_info"
        case methods, created
    }

    /// Reads `summary.json` from a run directory.
    ///
    /// - Throws: ``RunError/unreadable(file:detail:)`` naming the file.
    public static func load(runDirectory: URL) throws -> RunSummary {
        let url = runDirectory.appendingPathComponent("summary.json")
        guard let data = try? Data(contentsOf: url) else {
            throw RunError.unreadable(file: url.path, detail: "no summary.json (is this a finished `ibke eval` run?)")
        }
        do {
            return try JSONDecoder().decode(RunSummary.self, from: data)
        } catch {
            throw RunError.unreadable(file: url.path, detail: "not an IBKE run summary (\(error))")
        }
    }

    /// The summary as JSON text (sorted keys, so files diff cleanly).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

/// Errors of evaluation runs and reports.
public enum RunError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, detail: String)
    case mismatch(file: String, detail: String)
    case invalidArgument(String)
    /// A protocol name that is not `single`, `batch:N` or `sequential:N`.
    case invalidProtocol(String)
    /// Chat-template prompts asked for a model without a template IBKE knows.
    case noChatTemplate(model: String)
    /// A run directory that holds a run, for a run that does not resume.
    case runExists(String)
    /// A run directory without a run, for a run that resumes.
    case noRunToResume(String)

    public var description: String {
        switch self {
        case .unreadable(let file, let detail): "\(file): \(detail)"
        case .mismatch(let file, let detail): "\(file): \(detail)"
        case .invalidArgument(let detail): detail
        case .invalidProtocol(let text): "protocol \(text): expected single, batch:N or sequential:N (N ≥ 1)"
        case .noChatTemplate(let model):
            "\(model): chat-template prompts need a chat template this model has and IBKE knows (ChatML, Llama 3, [INST])"
        case .runExists(let path): "\(path) already holds a run"
        case .noRunToResume(let path): "\(path) holds no run to resume (no params.json)"
        }
    }
}
