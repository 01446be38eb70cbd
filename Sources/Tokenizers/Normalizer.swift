import Foundation

/// The normalizer stage: rewrites each run of text between added tokens before pre-tokenizing
/// (port of the HF tokenizers `normalizers` that BPE models use).
public enum Normalizer: Sendable {
    /// Puts `prefix` before non-empty text (Llama 2's legacy `▁` prefix).
    case prepend(String)
    /// Replaces every occurrence of `pattern` with `content` (Llama 2's spaces to `▁`).
    case replace(pattern: String, content: String)
    /// Unicode normalization forms.
    case nfc, nfd, nfkc, nfkd
    /// Lower-cases the text.
    case lowercase
    /// Removes leading and/or trailing whitespace.
    case strip(left: Bool, right: Bool)
    /// Each normalizer in turn.
    case sequence([Normalizer])

    func normalize(_ text: String) -> String {
        switch self {
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content):
            guard !pattern.isEmpty else { return text }
            return Self.replacing(pattern, with: content, in: text)
        case .nfc:
            return text.precomposedStringWithCanonicalMapping
        case .nfd:
            return text.decomposedStringWithCanonicalMapping
        case .nfkc:
            return text.precomposedStringWithCompatibilityMapping
        case .nfkd:
            return text.decomposedStringWithCompatibilityMapping
        case .lowercase:
            return text.lowercased()
        case .strip(let left, let right):
            let scalars = Array(text.unicodeScalars)
            var start = 0
            var end = scalars.count
            while left && start < end && scalars[start].properties.isWhitespace { start += 1 }
            while right && end > start && scalars[end - 1].properties.isWhitespace { end -= 1 }
            var result = String.UnicodeScalarView()
            result.append(contentsOf: scalars[start..<end])
            return String(result)
        case .sequence(let stages):
            return stages.reduce(text) { $1.normalize($0) }
        }
    }

    /// Literal replacement on Unicode scalars (not grapheme clusters, which would keep `▁` from
    /// matching before a combining mark).
    private static func replacing(
        _ pattern: String, with content: String, in text: String
    )
        -> String
    {
        let source = Array(text.unicodeScalars)
        let needle = Array(pattern.unicodeScalars)
        var result = String.UnicodeScalarView()
        var i = 0
        while i < source.count {
            if source[i] == needle[0] && i + needle.count <= source.count
                && source[i..<(i + needle.count)].elementsEqual(needle)
            {
                result.append(contentsOf: content.unicodeScalars)
                i += needle.count
            } else {
                result.append(source[i])
                i += 1
            }
        }
        return String(result)
    }
}
