import Foundation
import ModelFormats

/// What every report rendering shows, derived once from the runs, so that the Markdown and the
/// HTML cannot disagree about columns, rows or warnings.
struct ReportContent {
    /// A metric column: the union of the runs' ``MetricInfo`` in display order.
    struct Column {
        let name: String
        let label: String
        let definition: String
    }

    /// One table row: a method's post-edit values, or the pre-edit values they start from.
    struct Row {
        enum Kind { case method, unedited, preEdit }
        let runIndex: Int
        let kind: Kind
        /// The method name (``Kind/method`` and ``Kind/preEdit``); empty for ``Kind/unedited``.
        let method: String
        /// Raw values (fractions; fluency in bits) in column order.
        let values: [Double?]
        let editSeconds: Double?
        let evaluationSeconds: Double?
    }

    /// One line of settings: a value per run, and whether differing values make numbers incomparable.
    struct Setting {
        let label: String
        let values: [String]
        /// What is compared across runs (the model's full digest rather than its file name).
        let keys: [String]
        let decidesComparability: Bool
        var differs: Bool { Set(keys).count > 1 }
    }

    /// A method's values of one metric along a sequential run.
    struct Series {
        let runIndex: Int
        let method: String
        let points: [(edits: Int, value: Double)]
    }

    let runs: [RunSummary]
    /// Run names as shown; a repeated name gets ` #2`, ` #3`, … so rows stay distinguishable.
    let runNames: [String]
    let columns: [Column]
    let rows: [Row]
    let settings: [Setting]
    let warnings: [String]
    /// Method names in order of first appearance: the colour index of each method in the charts.
    let methodOrder: [String]

    init(_ runs: [RunSummary]) {
        self.runs = runs
        runNames = Self.distinctNames(runs.map(\.run))
        let (columns, definitionWarnings) = Self.columns(of: runs, names: runNames)
        self.columns = columns
        rows = runs.indices.flatMap { Self.rows(of: runs[$0], index: $0, columns: columns) }
        settings = Self.settings(of: runs)
        let differing = settings.filter { $0.decidesComparability && $0.differs }
        var warnings: [String] = []
        if !differing.isEmpty {
            let names = runNames
            let parts = differing.map { setting in
                "\(setting.label) (" + zip(names, setting.values).map { "\($0): \($1)" }.joined(separator: "; ") + ")"
            }
            warnings.append(
                "Runs differ in settings that make their numbers incomparable: "
                    + parts.joined(separator: "; ") + ".")
        }
        self.warnings = warnings + definitionWarnings
        var order: [String] = []
        for run in runs { for method in run.methods where !order.contains(method.method) { order.append(method.method) } }
        methodOrder = order
    }

    var severalRuns: Bool { runs.count > 1 }

    /// The sequential curves of one metric, one series per method of every run that has a curve.
    func curves(of column: Column) -> [Series] {
        runs.indices.flatMap { index in
            runs[index].methods.compactMap { method -> Series? in
                let points: [(edits: Int, value: Double)] = method.curve.compactMap { point in
                    guard let value = point.metrics[column.name], value.isFinite else { return nil }
                    return (point.edits, value)
                }
                return points.isEmpty
                    ? nil
                    : Series(
                        runIndex: index, method: method.method,
                        points: points.sorted { $0.edits < $1.edits })
            }
        }
    }

    /// The columns that have at least one curve point.
    var curveColumns: [Column] { columns.filter { !curves(of: $0).isEmpty } }

    /// How a row is named in a table: the method, or what the pre-edit values belong to.
    func rowLabel(_ row: Row) -> String {
        switch row.kind {
        case .method: row.method
        case .unedited: "unedited model"
        case .preEdit: "\(row.method) (pre-edit)"
        }
    }

    // MARK: Derivation

    private static func distinctNames(_ names: [String]) -> [String] {
        var seen: [String: Int] = [:]
        return names.map { name in
            seen[name, default: 0] += 1
            return seen[name]! == 1 ? name : "\(name) #\(seen[name]!)"
        }
    }

    /// The union of the runs' metrics in order of first appearance; metrics that appear in values
    /// but not in `metric_info` come last, so nothing measured is dropped. A metric whose label or
    /// definition differs between runs yields a warning: same name, different measurement.
    private static func columns(of runs: [RunSummary], names: [String]) -> ([Column], [String]) {
        var columns: [Column] = []
        var firstRun: [String: Int] = [:]
        var warnings: [String] = []
        for (index, run) in runs.enumerated() {
            for info in run.metricInfo {
                if let existing = columns.first(where: { $0.name == info.name }) {
                    if existing.definition != info.definition || existing.label != info.label {
                        let first = names[firstRun[info.name]!]
                        warnings.append(
                            "Metric \(info.name) is defined differently in \(first) "
                                + "(\(existing.label): \(existing.definition)) and \(names[index]) "
                                + "(\(info.label): \(info.definition)).")
                    }
                    continue
                }
                columns.append(Column(name: info.name, label: info.label, definition: info.definition))
                firstRun[info.name] = index
            }
        }
        let described = Set(columns.map(\.name))
        var undescribed = Set<String>()
        for run in runs {
            for method in run.methods {
                undescribed.formUnion(method.metrics.keys)
                undescribed.formUnion(method.preMetrics.keys)
                for point in method.curve { undescribed.formUnion(point.metrics.keys) }
            }
        }
        for name in undescribed.subtracting(described).sorted() {
            columns.append(Column(name: name, label: name, definition: "not described in summary.json"))
        }
        return (columns, warnings)
    }

    /// A run's rows: one `unedited model` row when every method starts from the same pre-edit
    /// values (the usual case: same model, same cases), else a pre-edit row under each method.
    private static func rows(of run: RunSummary, index: Int, columns: [Column]) -> [Row] {
        let pre = run.methods.map { method in columns.map { method.preMetrics[$0.name] } }
        let hasPre = pre.contains { $0.contains { $0 != nil } }
        let shared = hasPre && pre.dropFirst().allSatisfy { sameValues($0, pre[0]) }
        var rows: [Row] = []
        if shared {
            rows.append(
                Row(
                    runIndex: index, kind: .unedited, method: "", values: pre[0],
                    editSeconds: nil, evaluationSeconds: nil))
        }
        for (method, preValues) in zip(run.methods, pre) {
            rows.append(
                Row(
                    runIndex: index, kind: .method, method: method.method,
                    values: columns.map { method.metrics[$0.name] },
                    editSeconds: method.editSecondsMean, evaluationSeconds: method.evaluationSecondsMean))
            if hasPre && !shared && preValues.contains(where: { $0 != nil }) {
                rows.append(
                    Row(
                        runIndex: index, kind: .preEdit, method: method.method, values: preValues,
                        editSeconds: nil, evaluationSeconds: nil))
            }
        }
        return rows
    }

    private static func sameValues(_ a: [Double?], _ b: [Double?]) -> Bool {
        zip(a, b).allSatisfy { x, y in
            switch (x, y) {
            case (nil, nil): true
            case (let x?, let y?): abs(x - y) <= 1e-9 * max(1, abs(x), abs(y))
            default: false
            }
        }
    }

    private static func settings(of runs: [RunSummary]) -> [Setting] {
        func row(
            _ label: String, decides: Bool = false, _ value: (RunSummary) -> String,
            key: ((RunSummary) -> String)? = nil
        ) -> Setting {
            let values = runs.map(value)
            return Setting(label: label, values: values, keys: key.map { runs.map($0) } ?? values, decidesComparability: decides)
        }
        return [
            row(
                "Model", decides: true, { "\(fileName($0.modelPath)) (sha256 \($0.modelSHA256.prefix(12)))" },
                key: { $0.modelSHA256.lowercased() }),
            row("Dataset", { "\($0.datasetKind) (\($0.datasetFormat)) \($0.datasetPath), \(caseCount($0))" }),
            row("Protocol", decides: true, { protocolDescription($0) }, key: { protocolKey($0) }),
            row("Metric family", decides: true, { $0.settings.metricFamily }),
            row("Top-k", decides: true, { $0.settings.topK == 1 ? "1 (argmax)" : "\($0.settings.topK)" }),
            row("Chat template", decides: true, { onOff($0.settings.chatTemplate) }),
            row("Generation metrics", { onOff($0.settings.generation) }),
            row("zsRE target", decides: true, { $0.settings.zsreTarget.rawValue }),
            row("Seed", { "\($0.settings.seed)" }),
            row("Created", { $0.created }),
        ]
    }

    private static func fileName(_ path: String) -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent
        return name.isEmpty ? path : name
    }

    private static func onOff(_ flag: Bool) -> String { flag ? "on" : "off" }

    /// Cases per method: one number when all methods ran on the same cases, else each method's.
    private static func caseCount(_ run: RunSummary) -> String {
        let counts = Set(run.methods.map(\.cases))
        if counts.count <= 1 { return "\(counts.first ?? 0) cases" }
        return "cases per method: " + run.methods.map { "\($0.method) \($0.cases)" }.joined(separator: ", ")
    }

    /// Edits made in a sequential run: the most cases any method ran.
    private static func editCount(_ run: RunSummary) -> Int { run.methods.map(\.cases).max() ?? 0 }

    /// The protocol as compared across runs: how many edits the model holds when it is measured.
    private static func protocolKey(_ run: RunSummary) -> String {
        let s = run.settings
        switch s.protocolKind {
        case "single": return "single"
        case "batch": return "batch of \(s.batchSize)"
        case "sequential":
            return "sequential of \(editCount(run))" + (s.batchSize > 1 ? " in batches of \(s.batchSize)" : "")
        default: return "\(s.protocolKind) (batch size \(s.batchSize))"
        }
    }

    private static func protocolDescription(_ run: RunSummary) -> String {
        let s = run.settings
        switch s.protocolKind {
        case "single": return "single (one edit at a time, the model restored after each)"
        case "sequential":
            let every = s.evaluateEvery > 0 ? "evaluated every \(s.evaluateEvery) edits" : "evaluated at the end"
            return "\(protocolKey(run)), \(every)"
        default: return protocolKey(run)
        }
    }

    /// One method of one run: how its statistics were obtained and its hyperparameters (one-line JSON).
    struct MethodSetting {
        let run: String
        let method: String
        let statistics: String
        let hyperparameters: String
    }

    var methodSettings: [MethodSetting] {
        runs.enumerated().flatMap { index, run in
            run.methods.map {
                MethodSetting(
                    run: runNames[index], method: $0.method, statistics: $0.statistics,
                    hyperparameters: $0.hyperparameters.serialized(indent: 0))
            }
        }
    }
}
