import Foundation

/// One metric as a grouped bar chart: a bar per method (grouped by run when several runs are
/// compared), its value ×100 written above it and the unedited model's value marked across it.
struct BarChart {
    let content: ReportContent
    let column: ReportContent.Column

    private static let barWidth = 34.0, barGap = 6.0, groupGap = 28.0
    private static let left = 44.0, right = 14.0, plotHeight = 200.0

    private struct Bar {
        let method: String
        let value: Double?
        let pre: Double?
    }

    /// Each run's bars: post-edit values with the matching pre-edit value (a method's own, or
    /// the run's shared `unedited model` row), all ×100.
    private var groups: [[Bar]] {
        guard let index = content.columns.firstIndex(where: { $0.name == column.name }) else { return [] }
        return content.runs.indices.map { run in
            let rows = content.rows.filter { $0.runIndex == run }
            let shared = rows.first { $0.kind == .unedited }?.values[index]
            return rows.filter { $0.kind == .method }.map { row in
                let own = rows.first { $0.kind == .preEdit && $0.method == row.method }?.values[index]
                return Bar(
                    method: row.method, value: row.values[index].map { $0 * 100 },
                    pre: (own ?? shared).map { $0 * 100 })
            }
        }
    }

    func svg() -> String {
        let groups = self.groups
        let bars = groups.flatMap { $0 }
        let axis = ValueAxis(values: bars.flatMap { [$0.value, $0.pre].compactMap { $0?.isFinite == true ? $0 : nil } })
        let groupWidths = groups.map { Double(max($0.count, 1)) * (Self.barWidth + Self.barGap) - Self.barGap }
        let barsWidth = groupWidths.reduce(0, +)
        let natural = Self.left + barsWidth + Self.groupGap * Double(groups.count + 1) + Self.right

        // A wide legend widens the chart: the extra room goes to the gaps, so groups stay centred.
        let legend = self.legend(hasPre: bars.contains { $0.pre != nil })
        let width = max(natural, min(legend.naturalWidth + 20, 640), 320)
        let gap = Self.groupGap + (width - natural) / Double(groups.count + 1)
        let legendHeight = legend.height(width: width - 10, left: 10)
        let top = 10 + legendHeight + 18
        let bottom = top + Self.plotHeight
        let height = bottom + (content.severalRuns ? 30 : 12)

        var canvas = SVGCanvas()
        legend.draw(on: &canvas, width: width - 10, left: 10, top: 8)
        canvas.valueAxis(axis, left: Self.left, right: width - Self.right, top: top, bottom: bottom)
        let yOf = { (value: Double) in bottom - min(max(value, 0), axis.maximum) / axis.maximum * Self.plotHeight }

        var groupStart = Self.left + gap
        for (run, group) in groups.enumerated() {
            for (position, bar) in group.enumerated() {
                let x = groupStart + Double(position) * (Self.barWidth + Self.barGap)
                draw(bar, run: run, x: x, yOf: yOf, bottom: bottom, on: &canvas)
            }
            if content.severalRuns {
                canvas.text(
                    ChartStyle.fit(content.runNames[run], width: groupWidths[run] + gap - 6),
                    x: groupStart + groupWidths[run] / 2, y: bottom + 18, anchor: .middle,
                    tooltip: content.runNames[run])
            }
            groupStart += groupWidths[run] + gap
        }
        return canvas.svg(width: width, height: height, title: "\(column.label) ×100 by method")
    }

    /// A bar with its value above it (above the pre-edit marker too, so the two never overlap).
    private func draw(
        _ bar: Bar, run: Int, x: Double, yOf: (Double) -> Double, bottom: Double,
        on canvas: inout SVGCanvas
    ) {
        let colour = ChartStyle.colour(content.methodOrder.firstIndex(of: bar.method) ?? 0)
        let centre = x + Self.barWidth / 2
        let pre = bar.pre.flatMap { $0.isFinite ? $0 : nil }
        guard let value = bar.value, value.isFinite else {
            canvas.text(
                ReportText.missing, x: centre, y: bottom - 4, anchor: .middle, size: 11, fill: ChartStyle.axis,
                tooltip: "\(content.runNames[run]) · \(bar.method): not measured")
            return
        }
        let top = yOf(value)
        let preNote = pre.map { ", unedited \(String(format: "%.1f", $0))" } ?? ""
        canvas.rect(
            x, top, Self.barWidth, bottom - top, fill: colour,
            tooltip: "\(content.runNames[run]) · \(bar.method): \(String(format: "%.1f", value))\(preNote)")
        if let pre {
            canvas.line(x - 3, yOf(pre), x + Self.barWidth + 3, yOf(pre), stroke: ChartStyle.text, width: 2, dash: "3 2")
        }
        let labelBase = min(top, pre.map { yOf($0) - 2 } ?? top)
        canvas.text(String(format: "%.1f", value), x: centre, y: labelBase - 4, anchor: .middle, size: 10)
    }

    private func legend(hasPre: Bool) -> ChartLegend {
        let methods = content.methodOrder.enumerated().map {
            ChartLegend.Entry(label: $0.element, swatch: .box(colour: ChartStyle.colour($0.offset)))
        }
        return ChartLegend(entries: methods + (hasPre ? [ChartLegend.Entry(label: "unedited model", swatch: .marker)] : []))
    }
}
