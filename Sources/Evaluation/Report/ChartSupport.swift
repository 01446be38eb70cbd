import Foundation

/// Colours, scales and legends shared by the report's SVG charts: a method keeps its colour in
/// every chart, a run its dash pattern, so charts can be read side by side.
enum ChartStyle {
    /// Tableau 10: distinct on white and for the common colour-vision deficiencies.
    static let palette = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    ]
    static let dashes = ["", "7 4", "2 3", "9 3 2 3", "1 5"]
    static let axis = "#555"
    static let grid = "#e3e3e3"
    static let text = "#222"
    /// Approximate advance of one character of the 12 px chart font, for layout without fonts.
    static let characterWidth = 6.6

    static func colour(_ index: Int) -> String { palette[index % palette.count] }
    static func dash(_ index: Int) -> String { dashes[index % dashes.count] }

    /// `text` shortened with `…` to at most `width` pixels.
    static func fit(_ text: String, width: Double) -> String {
        let limit = max(1, Int(width / characterWidth))
        return text.count <= limit ? text : String(text.prefix(max(1, limit - 1))) + "…"
    }
}

/// A linear axis from zero: the top is 100 when every value is a percentage, else a round
/// number above the largest value (fluency ×100 is in the hundreds).
struct ValueAxis {
    let maximum: Double
    let ticks: [Double]

    init(values: [Double], minimumTop: Double = 100) {
        let largest = values.filter(\.isFinite).max() ?? 0
        let step = ValueAxis.step(for: max(largest, minimumTop), intervals: 5)
        let top = largest <= minimumTop + 1e-9 ? minimumTop : (largest / step).rounded(.up) * step
        maximum = top
        ticks = stride(from: 0, through: top + step / 2, by: step).map { $0 }
    }

    /// A 1, 2 or 5 × 10ⁿ step giving about `intervals` intervals up to `span`.
    static func step(for span: Double, intervals: Int) -> Double {
        guard span > 0 else { return 1 }
        let raw = span / Double(intervals)
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let fraction = raw / magnitude
        let nice: Double = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        return nice * magnitude
    }
}

/// SVG markup assembled as lines; every attribute value and text passes through ``ReportText/xml(_:)``.
struct SVGCanvas {
    private(set) var elements: [String] = []

    static func number(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.1f", rounded)
    }

    mutating func line(
        _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String,
        width: Double = 1, dash: String = ""
    ) {
        let dashed = dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\""
        elements.append(
            "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(n(width))\"\(dashed)/>"
        )
    }

    mutating func rect(_ x: Double, _ y: Double, _ width: Double, _ height: Double, fill: String, tooltip: String? = nil) {
        let open = "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(height))\" fill=\"\(fill)\""
        elements.append(tooltip.map { open + "><title>\(ReportText.xml($0))</title></rect>" } ?? open + "/>")
    }

    mutating func circle(_ x: Double, _ y: Double, radius: Double, fill: String, tooltip: String) {
        elements.append(
            "<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"\(n(radius))\" fill=\"\(fill)\" stroke=\"#fff\" stroke-width=\"1\"><title>\(ReportText.xml(tooltip))</title></circle>"
        )
    }

    mutating func polyline(_ points: [(Double, Double)], stroke: String, dash: String) {
        let list = points.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " ")
        let dashed = dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\""
        elements.append(
            "<polyline points=\"\(list)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"2\" stroke-linejoin=\"round\"\(dashed)/>")
    }

    enum Anchor: String { case start, middle, end }

    mutating func text(
        _ content: String, x: Double, y: Double, anchor: Anchor = .start, size: Double = 12,
        fill: String = ChartStyle.text, weight: String? = nil, tooltip: String? = nil
    ) {
        let bold = weight.map { " font-weight=\"\($0)\"" } ?? ""
        let title = tooltip.map { "<title>\(ReportText.xml($0))</title>" } ?? ""
        elements.append(
            "<text x=\"\(n(x))\" y=\"\(n(y))\" text-anchor=\"\(anchor.rawValue)\" font-size=\"\(n(size))\" fill=\"\(fill)\"\(bold)>\(title)\(ReportText.xml(content))</text>"
        )
    }

    /// A horizontal axis from zero to `axis.maximum` over `top…bottom`: grid lines and labels.
    mutating func valueAxis(_ axis: ValueAxis, left: Double, right: Double, top: Double, bottom: Double) {
        for tick in axis.ticks {
            let y = bottom - tick / axis.maximum * (bottom - top)
            if tick > 0 { line(left, y, right, y, stroke: ChartStyle.grid) }
            text(ReportText.trimmed(tick), x: left - 6, y: y + 4, anchor: .end, size: 11, fill: ChartStyle.axis)
        }
        line(left, top, left, bottom, stroke: ChartStyle.axis)
        line(left, bottom, right, bottom, stroke: ChartStyle.axis)
    }

    /// The whole chart: an `<svg>` element sized `width` × `height` with an accessible title.
    func svg(width: Double, height: Double, title: String) -> String {
        ([
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\">",
            "<title>\(ReportText.xml(title))</title>",
        ] + elements + ["</svg>"]).joined(separator: "\n")
    }

    private func n(_ value: Double) -> String { Self.number(value) }
}

/// A legend laid out in rows across the top of a chart.
struct ChartLegend {
    enum Swatch {
        case box(colour: String)
        case line(colour: String, dash: String)
        case marker
    }
    struct Entry {
        let label: String
        let swatch: Swatch
    }

    let entries: [Entry]
    static let rowHeight = 18.0

    /// Entries placed left to right, wrapping at `width`: (x, row) of each.
    private func positions(width: Double, left: Double) -> [(x: Double, row: Int)] {
        var x = left
        var row = 0
        return entries.map { entry in
            let advance = 22 + Double(entry.label.count) * ChartStyle.characterWidth + 14
            if x > left && x + advance > width {
                x = left
                row += 1
            }
            defer { x += advance }
            return (x, row)
        }
    }

    func height(width: Double, left: Double) -> Double {
        Double((positions(width: width, left: left).map(\.row).max() ?? -1) + 1) * Self.rowHeight
    }

    /// The widest a single row would be: charts grow to fit short legends on one line.
    var naturalWidth: Double {
        entries.reduce(0) { $0 + 22 + Double($1.label.count) * ChartStyle.characterWidth + 14 }
    }

    func draw(on canvas: inout SVGCanvas, width: Double, left: Double, top: Double) {
        for (entry, place) in zip(entries, positions(width: width, left: left)) {
            let y = top + Double(place.row) * Self.rowHeight + 9
            switch entry.swatch {
            case .box(let colour): canvas.rect(place.x, y - 6, 14, 12, fill: colour)
            case .line(let colour, let dash): canvas.line(place.x, y, place.x + 16, y, stroke: colour, width: 2.5, dash: dash)
            case .marker: canvas.line(place.x, y, place.x + 16, y, stroke: ChartStyle.text, width: 2, dash: "3 2")
            }
            canvas.text(entry.label, x: place.x + 22, y: y + 4)
        }
    }
}
