import Foundation

/// The HTML comparison of evaluation runs (`ibke report --out`): the Markdown's settings, warnings,
/// table and legend, plus a bar chart per metric and, for sequential runs, a line chart per metric.
/// Self-contained (inline CSS and SVG, no scripts, nothing fetched) so it can be mailed or archived
/// with a run, and well-formed XML so that tests can parse it.
public enum ReportHTML {
    /// The complete page as XHTML-compatible HTML5 text.
    public static func document(_ runs: [RunSummary]) -> String {
        let content = ReportContent(runs)
        let title = runs.count == 1 ? "IBKE evaluation: \(content.runNames[0])" : "IBKE evaluation: \(runs.count) runs compared"
        var body: [String] = ["<h1>\(x(title))</h1>"]
        body += content.warnings.map { "<p class=\"warning\"><strong>Warning:</strong> \(x($0))</p>" }
        body += ["<h2>Settings</h2>", settingsTable(content)]
        body += [
            "<h2>Results</h2>", resultsTable(content),
            "<p class=\"note\">Metric values ×100 (fractions as percentages; fluency in bits ×100). "
                + "Times: mean seconds per case. Grey rows: the unedited model on the same probes.</p>",
        ]
        body += ["<h2>Methods</h2>", methodList(content)]
        body += ["<h2>Metrics</h2>", legend(content)]
        if !content.columns.isEmpty {
            body += ["<h2>Charts</h2>", "<div class=\"charts\">"]
            body += content.columns.map { figure($0, BarChart(content: content, column: $0).svg()) }
            body.append("</div>")
        }
        let curveColumns = content.curveColumns
        if !curveColumns.isEmpty {
            body += ["<h2>Sequential editing</h2>", "<div class=\"charts\">"]
            body += curveColumns.map { figure($0, LineChart(content: content, column: $0).svg()) }
            body.append("</div>")
        }
        return """
            <!DOCTYPE html>
            <html xmlns="http://www.w3.org/1999/xhtml" lang="en">
            <head>
            <meta charset="utf-8"/>
            <meta name="viewport" content="width=device-width, initial-scale=1"/>
            <meta name="generator" content="ibke report"/>
            <title>\(x(title))</title>
            <style>
            \(style)
            </style>
            </head>
            <body>
            \(body.joined(separator: "\n"))
            </body>
            </html>

            """
    }

    private static func x(_ text: String) -> String { ReportText.xml(text) }

    /// Settings as rows, runs as columns; a differing setting that makes numbers incomparable is highlighted.
    private static func settingsTable(_ content: ReportContent) -> String {
        var lines = [
            "<table class=\"settings\">",
            "<thead><tr><th>Setting</th>"
                + content.runNames.map { "<th>\(x($0))</th>" }.joined() + "</tr></thead>", "<tbody>",
        ]
        for setting in content.settings {
            let differs = content.severalRuns && setting.decidesComparability && setting.differs
            lines.append(
                (differs ? "<tr class=\"differs\">" : "<tr>") + "<th>\(x(setting.label))</th>"
                    + setting.values.map { "<td>\(x($0))</td>" }.joined() + "</tr>")
        }
        return (lines + ["</tbody>", "</table>"]).joined(separator: "\n")
    }

    private static func resultsTable(_ content: ReportContent) -> String {
        let several = content.severalRuns
        var header = several ? "<th>Run</th>" : ""
        header += "<th>Method</th>"
        header += content.columns.map { "<th class=\"num\" title=\"\(x($0.definition))\">\(x($0.label))</th>" }.joined()
        header += "<th class=\"num\">Edit s/case</th><th class=\"num\">Eval s/case</th>"
        var lines = ["<div class=\"scroll\">", "<table class=\"results\">", "<thead><tr>\(header)</tr></thead>", "<tbody>"]
        var previousRun = -1
        for row in content.rows {
            var cells = ""
            if several && row.runIndex != previousRun {
                let span = content.rows.filter { $0.runIndex == row.runIndex }.count
                cells += "<th rowspan=\"\(span)\">\(x(content.runNames[row.runIndex]))</th>"
            }
            previousRun = row.runIndex
            cells += "<td>\(x(content.rowLabel(row)))</td>"
            cells += row.values.map { "<td class=\"num\">\(ReportText.scaled($0))</td>" }.joined()
            cells += "<td class=\"num\">\(ReportText.seconds(row.editSeconds))</td>"
            cells += "<td class=\"num\">\(ReportText.seconds(row.evaluationSeconds))</td>"
            lines.append((row.kind == .method ? "<tr>" : "<tr class=\"pre\">") + cells + "</tr>")
        }
        return (lines + ["</tbody>", "</table>", "</div>"]).joined(separator: "\n")
    }

    /// Each method's statistics setting and hyperparameters, as the run recorded them.
    private static func methodList(_ content: ReportContent) -> String {
        let items = content.methodSettings.map {
            "<dt>\(x($0.run)) · \(x($0.method)) (statistics: \(x($0.statistics)))</dt><dd><code>\(x($0.hyperparameters))</code></dd>"
        }
        return (["<dl class=\"legend\">"] + items + ["</dl>"]).joined(separator: "\n")
    }

    private static func legend(_ content: ReportContent) -> String {
        let items = content.columns.map {
            "<dt>\(x($0.label)) <code>\(x($0.name))</code></dt><dd>\(x($0.definition))</dd>"
        }
        return (["<dl class=\"legend\">"] + items + ["</dl>"]).joined(separator: "\n")
    }

    private static func figure(_ column: ReportContent.Column, _ svg: String) -> String {
        "<figure>\n<figcaption><strong>\(x(column.label))</strong> — \(x(column.definition))</figcaption>\n\(svg)\n</figure>"
    }

    private static let style = """
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
               color: #222; background: #fff; max-width: 1280px; margin: 2rem auto; padding: 0 1.5rem; }
        h1 { font-size: 1.6rem; margin: 0 0 1rem; }
        h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; padding-bottom: .3rem; border-bottom: 1px solid #ddd; }
        table { border-collapse: collapse; margin: .4rem 0; }
        th, td { padding: .3rem .75rem; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
        thead th { background: #f6f6f6; border-bottom: 2px solid #aaa; }
        tbody th { font-weight: 600; }
        .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        tr.pre td { color: #777; font-style: italic; }
        tr.differs th, tr.differs td { background: #fff3dc; }
        .scroll { overflow-x: auto; }
        .warning { background: #fff3dc; border-left: 4px solid #e08a00; padding: .5rem .8rem; margin: 1rem 0; }
        .note { color: #555; font-size: .9rem; }
        dl.legend dt { font-weight: 600; margin-top: .4rem; }
        dl.legend dd { margin: 0 0 0 1.5rem; color: #444; }
        code { font: .85em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f2f2f2;
               padding: 0 .25em; border-radius: 3px; font-weight: normal; }
        .charts { display: flex; flex-wrap: wrap; gap: 1.25rem; align-items: flex-start; }
        figure { margin: 0; padding: .7rem .8rem; border: 1px solid #e3e3e3; border-radius: 6px; max-width: 100%; }
        figcaption { font-size: .9rem; margin-bottom: .4rem; max-width: 640px; color: #333; }
        svg.chart { display: block; max-width: 100%; height: auto; font-family: inherit; }
        """
}
