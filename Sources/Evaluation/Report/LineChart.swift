import Foundation

/// One metric along sequential runs: value ×100 against the number of edits made, a line per
/// method (colour) and run (dash pattern), so degradation with edit count is visible at a glance.
struct LineChart {
    let content: ReportContent
    let column: ReportContent.Column

    func svg() -> String {
        let series = content.curves(of: column)
        let runsWithCurves = Array(Set(series.map(\.runIndex))).sorted()
        let curves = series.map { s in
            CurveChart.Series(
                label: runsWithCurves.count > 1 ? "\(content.runNames[s.runIndex]) · \(s.method)" : s.method,
                points: s.points.map { (Double($0.edits), $0.value * 100) },
                colour: content.methodOrder.firstIndex(of: s.method) ?? 0,
                dash: runsWithCurves.firstIndex(of: s.runIndex) ?? 0)
        }
        return CurveChart(
            series: curves, xLabel: "number of edits", xUnit: "edits",
            title: "\(column.label) ×100 against the number of edits"
        ).svg()
    }
}
