import Foundation

/// Formatting and escaping shared by the Markdown and HTML reports, so both print the same digits.
enum ReportText {
    /// A metric value ×100 with one decimal (as the literature prints them: 0.954 → `95.4`,
    /// fluency 6.22 bits → `622.0`); `–` when the run has no such value.
    static func scaled(_ value: Double?) -> String {
        guard let value, value.isFinite else { return missing }
        return String(format: "%.1f", value * 100)
    }

    /// Mean seconds per case with about three significant digits, never in exponent notation.
    static func seconds(_ value: Double?) -> String {
        guard let value, value.isFinite, value >= 0 else { return missing }
        switch value {
        case 0: return "0"
        case ..<0.0005: return "<0.001"
        case ..<1: return String(format: "%.3f", value)
        case ..<10: return String(format: "%.2f", value)
        case ..<100: return String(format: "%.1f", value)
        default: return String(format: "%.0f", value)
        }
    }

    /// Shown for a metric a run did not compute.
    static let missing = "–"

    /// Text for XML and XHTML content or attribute values: the five special characters become
    /// references, and control characters XML 1.0 forbids become U+FFFD, so any method or run
    /// name keeps the page well-formed.
    static func xml(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || (0xFFFE...0xFFFF).contains(scalar.value):
                out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Text for a Markdown table cell or list item: one line, with the characters that would
    /// break the table (`|`) or turn into markup (HTML tags, emphasis, links, code) escaped;
    /// `>` stays: it only quotes at the start of a line, which a cell or list item never is.
    static func markdown(_ text: String) -> String {
        var out = ""
        let characters = Array(text)
        for (index, character) in characters.enumerated() {
            switch character {
            case "\n", "\r", "\r\n": out += " "
            case "\\", "|", "<", "*", "[", "]", "`": out += "\\\(character)"
            case "_":
                // Intraword underscores (`ft_l`) are never emphasis in CommonMark: keep them readable.
                let before = index > 0 && characters[index - 1].isLetterOrDigit
                let after = index + 1 < characters.count && characters[index + 1].isLetterOrDigit
                out += before && after ? "_" : "\\_"
            default: out.append(character)
            }
        }
        return out
    }
}

extension Character {
    fileprivate var isLetterOrDigit: Bool { isLetter || isNumber }
}

extension ReportText {
    /// An axis tick: no decimals when whole (`20`, `100`), else as few as needed (`2.5`).
    static func trimmed(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%g", value)
    }
}
