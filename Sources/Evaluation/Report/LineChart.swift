import Foundation

/// One metric along sequential runs: value ×100 against the number of edits made, a line per
/// method (colour) and run (dash pattern), so degradation with edit count is visible at a glance.
struct LineChart {
    let content: ReportContent
    let column: ReportContent.Column

    private static let width = 640.0, left = 48.0, right = 18.0, plotHeight = 220.0

    func svg() -> String {
        let series = content.curves(of: column)
        let runsWithCurves = Array(Set(series.map(\.runIndex))).sorted()
        let label = { (s: ReportContent.Series) in
            runsWithCurves.count > 1 ? "\(content.runNames[s.runIndex]) · \(s.method)" : s.method
        }
        let style = { (s: ReportContent.Series) in
            (colour: ChartStyle.colour(content.methodOrder.firstIndex(of: s.method) ?? 0),
             dash: ChartStyle.dash(runsWithCurves.firstIndex(of: s.runIndex) ?? 0))
        }

        let legend = ChartLegend(entries: series.map {
            ChartLegend.Entry(label: label($0), swatch: .line(colour: style($0).colour, dash: style($0).dash))
        })
        let legendHeight = legend.height(width: Self.width - 10, left: 10)
        let top = 10 + legendHeight + 14
        let bottom = top + Self.plotHeight
        let height = bottom + 44
        let plotRight = Self.width - Self.right

        let axis = ValueAxis(values: series.flatMap { $0.points.map { $0.value * 100 } })
        let maxEdits = series.flatMap { $0.points.map(\.edits) }.max() ?? 0
        let xStep = max(1, ValueAxis.step(for: Double(max(maxEdits, 1)), intervals: 6).rounded(.up))
        let xMax = max(xStep, (Double(maxEdits) / xStep).rounded(.up) * xStep)
        let xOf = { (edits: Int) in Self.left + Double(edits) / xMax * (plotRight - Self.left) }
        let yOf = { (value: Double) in bottom - min(max(value, 0), axis.maximum) / axis.maximum * Self.plotHeight }

        var canvas = SVGCanvas()
        legend.draw(on: &canvas, width: Self.width - 10, left: 10, top: 8)
        canvas.valueAxis(axis, left: Self.left, right: plotRight, top: top, bottom: bottom)
        for tick in stride(from: 0, through: xMax + xStep / 2, by: xStep) {
            let x = xOf(Int(tick))
            canvas.line(x, bottom, x, bottom + 4, stroke: ChartStyle.axis)
            canvas.text(ReportText.trimmed(tick), x: x, y: bottom + 17, anchor: .middle, size: 11, fill: ChartStyle.axis)
        }
        canvas.text("number of edits", x: (Self.left + plotRight) / 2, y: bottom + 36, anchor: .middle, fill: ChartStyle.axis)

        for s in series {
            let (colour, dash) = style(s)
            let points = s.points.map { (xOf($0.edits), yOf($0.value * 100)) }
            if points.count > 1 { canvas.polyline(points, stroke: colour, dash: dash) }
            for (point, position) in zip(s.points, points) {
                canvas.circle(position.0, position.1, radius: 3, fill: colour,
                              tooltip: "\(label(s)): \(String(format: "%.1f", point.value * 100)) after \(point.edits) edits")
            }
        }
        return canvas.svg(width: Self.width, height: height, title: "\(column.label) ×100 against the number of edits")
    }
}
