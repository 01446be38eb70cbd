/// Error text made safe for a terminal. Messages quote file content (tensor names, metadata
/// keys, tokens), and a crafted file must not be able to move the cursor, retitle the window,
/// hide text behind bidirectional overrides or flood the screen: control characters are shown
/// as escapes and a long message is cut.
enum TerminalText {
    /// The most characters of one message that are shown.
    static let limit = 1_000

    /// `text` with control characters (C0, DEL, C1, bidirectional overrides and isolates, and
    /// line breaks unless `keepingNewlines`) written as `\u{…}` escapes, cut to ``limit``.
    static func safe(_ text: String, keepingNewlines: Bool = false) -> String {
        var out = ""
        var shown = 0
        for scalar in text.unicodeScalars {
            if shown >= limit {
                let rest = text.unicodeScalars.count - shown
                out += "… (\(rest) more characters)"
                break
            }
            let v = scalar.value
            let control = v < 0x20 || (0x7F...0x9F).contains(v) || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
            if control && !(keepingNewlines && scalar == "\n") {
                out += "\\u{" + String(v, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
            shown += 1
        }
        return out
    }
}
