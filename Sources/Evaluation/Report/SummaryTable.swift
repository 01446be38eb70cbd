import Foundation

/// The Markdown comparison of evaluation runs: each run's `summary.md`, and what `ibke report`
/// prints. It states every setting that decides whether two numbers may be compared, because the
/// field's tables silently mix metrics and protocols (METHODS.md §10).
public enum SummaryTable {
    /// Markdown for one run (its `summary.md`) or a comparison of several: settings, warnings when
    /// runs are incomparable, one results table (values ×100), sequential curves and a metric legend.
    public static func markdown(_ runs: [RunSummary]) -> String {
        let content = ReportContent(runs)
        var lines: [String] = []
        lines.append(
            runs.count == 1
                ? "# IBKE evaluation: \(ReportText.markdown(content.runNames[0]))"
                : "# IBKE evaluation: \(runs.count) runs compared")
        lines.append("")
        lines += settings(content)
        lines.append("")
        for warning in content.warnings {
            lines += ["> **Warning:** \(ReportText.markdown(warning))", ""]
        }
        lines += results(content)
        lines.append("")
        lines.append(
            "Metric values ×100 (fractions as percentages; fluency in bits ×100). "
                + "Times: mean seconds per case. Pre-edit rows: the unedited model on the same probes.")
        let curves = self.curves(content)
        if !curves.isEmpty { lines += [""] + curves }
        lines += ["", "## Methods", ""]
        for m in content.methodSettings {
            let run = content.severalRuns ? ReportText.markdown(m.run) + " · " : ""
            lines.append(
                "- \(run)**\(ReportText.markdown(m.method))** (statistics: \(ReportText.markdown(m.statistics))): `\(m.hyperparameters)`")
        }
        lines += ["", "## Metrics", ""]
        for column in content.columns {
            lines.append(
                "- **\(ReportText.markdown(column.label))** (\(ReportText.markdown(column.name))): "
                    + ReportText.markdown(column.definition))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One run: a bullet per setting. Several: a table with a column per run, each differing
    /// setting that makes numbers incomparable marked ⚠.
    private static func settings(_ content: ReportContent) -> [String] {
        if !content.severalRuns {
            return content.settings.map { "- **\($0.label):** \(ReportText.markdown($0.values[0]))" }
        }
        var lines = [
            row(["Setting"] + content.runNames.map(ReportText.markdown)),
            row(Array(repeating: ":--", count: content.runs.count + 1)),
        ]
        for setting in content.settings {
            let label = setting.label + (setting.decidesComparability && setting.differs ? " ⚠" : "")
            lines.append(row([label] + setting.values.map(ReportText.markdown)))
        }
        return lines
    }

    private static func results(_ content: ReportContent) -> [String] {
        let several = content.severalRuns
        var header = several ? ["Run"] : []
        header += ["Method"] + content.columns.map { ReportText.markdown($0.label) } + ["Edit s/case", "Eval s/case"]
        var lines = [
            row(header),
            row(
                (several ? [":--"] : []) + [":--"]
                    + Array(repeating: "--:", count: content.columns.count + 2)),
        ]
        var previousRun = -1
        for result in content.rows {
            var cells: [String] = []
            if several {
                cells.append(result.runIndex == previousRun ? "" : ReportText.markdown(content.runNames[result.runIndex]))
                previousRun = result.runIndex
            }
            let label = ReportText.markdown(content.rowLabel(result))
            cells.append(result.kind == .method ? label : "*\(label)*")
            cells += result.values.map(ReportText.scaled)
            cells += [ReportText.seconds(result.editSeconds), ReportText.seconds(result.evaluationSeconds)]
            lines.append(row(cells))
        }
        return lines
    }

    /// Sequential runs: each method's metrics after every evaluated number of edits.
    private static func curves(_ content: ReportContent) -> [String] {
        let columns = content.curveColumns
        guard !columns.isEmpty else { return [] }
        let several = content.severalRuns
        var lines = ["## Sequential curves", ""]
        lines.append(row((several ? ["Run"] : []) + ["Method", "Edits"] + columns.map { ReportText.markdown($0.label) }))
        lines.append(row((several ? [":--"] : []) + [":--"] + Array(repeating: "--:", count: columns.count + 1)))
        for (index, run) in content.runs.enumerated() {
            for method in run.methods where !method.curve.isEmpty {
                for point in method.curve.sorted(by: { $0.edits < $1.edits }) {
                    var cells = several ? [ReportText.markdown(content.runNames[index])] : []
                    cells += [ReportText.markdown(method.method), "\(point.edits)"]
                    cells += columns.map { ReportText.scaled(point.metrics[$0.name]) }
                    lines.append(row(cells))
                }
            }
        }
        return lines
    }

    private static func row(_ cells: [String]) -> String { "| " + cells.joined(separator: " | ") + " |" }
}
