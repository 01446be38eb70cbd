import Foundation

/// Curves of values against a count (edits made, training steps) as an SVG line chart: a
/// legend, a value axis from zero, an x axis of round ticks, a line per series with a marker
/// and tooltip per point (markers only when there are few points).
public struct CurveChart: Sendable {
    public struct Series: Sendable {
        public var label: String
        public var points: [(x: Double, y: Double)]
        public var colour: String
        public var dash: String

        /// A series in the palette's colour `index` (and dash pattern `dashIndex`).
        public init(label: String, points: [(x: Double, y: Double)], colour index: Int, dash dashIndex: Int = 0) {
            self.label = label
            self.points = points
            colour = ChartStyle.colour(index)
            dash = ChartStyle.dash(dashIndex)
        }
    }

    public var series: [Series]
    public var xLabel: String
    /// What x counts, for tooltips ("… after 50 edits").
    public var xUnit: String
    /// The value axis starts at zero and reaches at least this.
    public var minimumTop: Double
    public var title: String

    public init(series: [Series], xLabel: String, xUnit: String, minimumTop: Double = 100, title: String) {
        self.series = series
        self.xLabel = xLabel
        self.xUnit = xUnit
        self.minimumTop = minimumTop
        self.title = title
    }

    private static let width = 640.0, left = 48.0, right = 18.0, plotHeight = 220.0

    public func svg() -> String {
        let legend = ChartLegend(
            entries: series.map {
                ChartLegend.Entry(label: $0.label, swatch: .line(colour: $0.colour, dash: $0.dash))
            })
        let legendHeight = legend.height(width: Self.width - 10, left: 10)
        let top = 10 + legendHeight + 14
        let bottom = top + Self.plotHeight
        let height = bottom + 44
        let plotRight = Self.width - Self.right

        let axis = ValueAxis(values: series.flatMap { $0.points.map(\.y) }, minimumTop: minimumTop)
        let largestX = series.flatMap { $0.points.map(\.x) }.max() ?? 0
        let xStep = max(1, ValueAxis.step(for: max(largestX, 1), intervals: 6).rounded(.up))
        let xMax = max(xStep, (largestX / xStep).rounded(.up) * xStep)
        let xOf = { (x: Double) in Self.left + x / xMax * (plotRight - Self.left) }
        let yOf = { (y: Double) in bottom - min(max(y, 0), axis.maximum) / axis.maximum * Self.plotHeight }

        var canvas = SVGCanvas()
        legend.draw(on: &canvas, width: Self.width - 10, left: 10, top: 8)
        canvas.valueAxis(axis, left: Self.left, right: plotRight, top: top, bottom: bottom)
        for tick in stride(from: 0, through: xMax + xStep / 2, by: xStep) {
            let x = xOf(tick)
            canvas.line(x, bottom, x, bottom + 4, stroke: ChartStyle.axis)
            canvas.text(ReportText.trimmed(tick), x: x, y: bottom + 17, anchor: .middle, size: 11, fill: ChartStyle.axis)
        }
        canvas.text(xLabel, x: (Self.left + plotRight) / 2, y: bottom + 36, anchor: .middle, fill: ChartStyle.axis)

        for s in series {
            let points = s.points.map { (xOf($0.x), yOf($0.y)) }
            if points.count > 1 { canvas.polyline(points, stroke: s.colour, dash: s.dash) }
            guard s.points.count <= 200 else { continue }
            for (point, position) in zip(s.points, points) {
                canvas.circle(
                    position.0, position.1, radius: 3, fill: s.colour,
                    tooltip: "\(s.label): \(String(format: "%.1f", point.y)) after \(ReportText.trimmed(point.x)) \(xUnit)")
            }
        }
        return canvas.svg(width: Self.width, height: height, title: title)
    }
}
