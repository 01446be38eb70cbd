/// A token matched whole in the input text before any other stage (chat markers such as
/// `<|im_start|>`, control tokens, user-defined tokens), with HF's `AddedToken` attributes.
public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    /// Special tokens are dropped by `decode(_:skipSpecialTokens: true)`.
    public var special: Bool
    /// Matched against the normalized text (true) or the raw text (false).
    public var normalized: Bool
    /// Whitespace before the token is absorbed into it.
    public var lstrip: Bool
    /// Whitespace after the token is absorbed into it.
    public var rstrip: Bool
    /// Matched only when not inside a word.
    public var singleWord: Bool

    public init(
        id: Int, content: String, special: Bool, normalized: Bool = false,
        lstrip: Bool = false, rstrip: Bool = false, singleWord: Bool = false
    ) {
        self.id = id
        self.content = content
        self.special = special
        self.normalized = normalized
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
    }
}

/// A run of input between added tokens, or an added token.
enum Segment {
    case text(TextPiece)
    case token(Int)
}

/// The added-token stage: finds added tokens in the text, leftmost-longest, and normalizes the
/// text between them (port of HF tokenizers' `AddedVocabulary::extract_and_normalize`).
///
/// Tokens with `normalized: false` are found in the raw text first; the remaining runs are then
/// normalized and searched for the `normalized: true` tokens, whose contents were normalized the
/// same way.
struct AddedTokenMatcher: Sendable {
    /// A trie over Unicode scalars; node 0 is the root.
    private struct Trie: Sendable {
        var children: [[UInt32: Int32]] = [[:]]
        /// For each node, the index into `tokens` of the token ending there, or -1.
        var terminal: [Int32] = [-1]

        mutating func insert(_ scalars: [Unicode.Scalar], token: Int) {
            var node = 0
            for scalar in scalars {
                if let next = children[node][scalar.value] {
                    node = Int(next)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][scalar.value] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            terminal[node] = Int32(token)
        }

        var isEmpty: Bool { children[0].isEmpty }

        /// The longest token starting at `start`: (index into `tokens`, end offset).
        func longestMatch(_ s: [Unicode.Scalar], at start: Int) -> (token: Int, end: Int)? {
            var node = 0
            var best: (Int, Int)?
            var i = start
            while i < s.count, let next = children[node][s[i].value] {
                node = Int(next)
                i += 1
                if terminal[node] >= 0 {
                    best = (Int(terminal[node]), i)
                }
            }
            return best
        }
    }

    let tokens: [AddedToken]
    private var rawTrie = Trie()
    private var normalizedTrie = Trie()

    init(tokens: [AddedToken], normalizer: Normalizer?) {
        self.tokens = tokens
        for (index, token) in tokens.enumerated() where !token.content.isEmpty {
            if token.normalized, let normalizer {
                normalizedTrie.insert(
                    Array(normalizer.normalize(token.content).unicodeScalars), token: index)
            } else if token.normalized {
                normalizedTrie.insert(Array(token.content.unicodeScalars), token: index)
            } else {
                rawTrie.insert(Array(token.content.unicodeScalars), token: index)
            }
        }
    }

    /// The segments of `text`: added tokens, and normalized runs of text between them.
    func segments(of text: String, normalizer: Normalizer?) -> [Segment] {
        var result: [Segment] = []
        let raw = Array(text.unicodeScalars)
        for (start, end, token) in matches(in: raw, trie: rawTrie) {
            if let token {
                result.append(.token(token))
                continue
            }
            var piece = Array(raw[start..<end])
            if let normalizer {
                var view = String.UnicodeScalarView()
                view.append(contentsOf: piece)
                piece = Array(normalizer.normalize(String(view)).unicodeScalars)
            }
            for (innerStart, innerEnd, inner) in matches(in: piece, trie: normalizedTrie) {
                if let inner {
                    result.append(.token(inner))
                } else if innerEnd > innerStart {
                    result.append(
                        .text(
                            TextPiece(
                                scalars: Array(piece[innerStart..<innerEnd]),
                                isFirst: start == 0 && innerStart == 0)))
                }
            }
        }
        return result
    }

    /// The runs of `s`: (start, end, token id or nil for plain text). Matches are leftmost-longest
    /// and do not overlap; a `singleWord` match inside a word is passed over, and `lstrip`/`rstrip`
    /// widen a match over neighbouring whitespace, as in HF's `find_matches`.
    private func matches(in s: [Unicode.Scalar], trie: Trie) -> [(Int, Int, Int?)] {
        guard !trie.isEmpty else { return [(0, s.count, nil)] }
        var runs: [(Int, Int, Int?)] = []
        var textStart = 0
        var i = 0
        while i < s.count {
            guard let (index, matchEnd) = trie.longestMatch(s, at: i) else {
                i += 1
                continue
            }
            let token = tokens[index]
            var start = i
            var end = matchEnd
            i = matchEnd
            if token.singleWord {
                let wordBefore = start > 0 && Self.isWordCharacter(s[start - 1])
                let wordAfter = end < s.count && Self.isWordCharacter(s[end])
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                while start > textStart && s[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.rstrip {
                while end < s.count && s[end].properties.isWhitespace { end += 1 }
                i = max(i, end)
            }
            if textStart < start {
                runs.append((textStart, start, nil))
            }
            runs.append((start, end, token.id))
            textStart = end
        }
        if textStart < s.count {
            runs.append((textStart, s.count, nil))
        }
        return runs
    }

    private static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || scalar.properties.isAlphabetic || scalar.properties.numericType != nil
    }
}
