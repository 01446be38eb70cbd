/// The pre-tokenizer regexes of byte-level BPE models, as hand-written scanners.
///
/// Each case is one regex applied with HF's `Split(behavior: isolated)`: every match becomes a
/// piece (the regexes match every character, so there are no gaps). The scanners follow the
/// regexes' alternation order and backtracking exactly; Swift `Regex` is not used because it is
/// slow and lacks the `(?!\S)` semantics on Linux. `splits.json` pins each scanner to HF
/// tokenizers' own Oniguruma matches.
public enum SplitPattern: String, Sendable, CaseIterable {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Qwen2: the Llama 3 regex with single digits (`\p{N}` instead of `\p{N}{1,3}`).
    case qwen2

    /// The regex source, as it appears in a `tokenizer.json` `Split` pre-tokenizer.
    public var regex: String {
        switch self {
        case .gpt2:
            #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        case .llama3:
            #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"#
                + #"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        case .qwen2:
            #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"#
                + #"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        }
    }

    /// The pattern whose regex source is `regex`, if it is one of the known ones.
    init?(regex: String) {
        guard let known = SplitPattern.allCases.first(where: { $0.regex == regex }) else {
            return nil
        }
        self = known
    }

    /// The end offsets of the pieces of `text`, in order (the last is `text.count`).
    func pieceEnds(_ text: [Unicode.Scalar]) -> [Int] {
        var ends: [Int] = []
        var start = 0
        while start < text.count {
            let end: Int
            switch self {
            case .gpt2: end = Self.gpt2Match(text, at: start)
            case .llama3: end = Self.llama3Match(text, at: start, maxDigits: 3)
            case .qwen2: end = Self.llama3Match(text, at: start, maxDigits: 1)
            }
            ends.append(end)
            start = end
        }
        return ends
    }

    // MARK: Scanners

    /// The end of the GPT-2 regex match at `i` (always past `i`).
    static func gpt2Match(_ s: [Unicode.Scalar], at i: Int) -> Int {
        let n = s.count
        let c = s[i]
        // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
        if c == "'", let end = contractionEnd(s, at: i, caseInsensitive: false) {
            return end
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
        var first = i
        if c == " " && i + 1 < n && CharacterClass.of(s[i + 1]) != .whitespace {
            first = i + 1
        }
        let cls = CharacterClass.of(s[first])
        if cls != .whitespace {
            return runEnd(s, from: first + 1, of: cls)
        }
        return whitespaceMatch(s, at: i)
    }

    /// The end of the Llama 3 (`maxDigits` 3) or Qwen2 (`maxDigits` 1) regex match at `i`.
    static func llama3Match(_ s: [Unicode.Scalar], at i: Int, maxDigits: Int) -> Int {
        let n = s.count
        let c = s[i]
        let cls = CharacterClass.of(c)
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == "'", let end = contractionEnd(s, at: i, caseInsensitive: true) {
            return end
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if cls == .letter {
            return runEnd(s, from: i + 1, of: .letter)
        }
        if cls != .number && c != "\r" && c != "\n" && i + 1 < n
            && CharacterClass.of(s[i + 1]) == .letter
        {
            return runEnd(s, from: i + 2, of: .letter)
        }
        // \p{N}{1,3} or \p{N}
        if cls == .number {
            var end = i + 1
            while end < n && end - i < maxDigits && CharacterClass.of(s[end]) == .number {
                end += 1
            }
            return end
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var first = i
        if c == " " && i + 1 < n && CharacterClass.of(s[i + 1]) == .other {
            first = i + 1
        }
        if CharacterClass.of(s[first]) == .other {
            var end = runEnd(s, from: first + 1, of: .other)
            while end < n && (s[end] == "\r" || s[end] == "\n") {
                end += 1
            }
            return end
        }
        // Only whitespace is left. `\s*[\r\n]+`: the greedy `\s*` backs off to the last newline of
        // the whitespace run, and `[\r\n]+` then takes just that one.
        let runEnd = runEnd(s, from: i + 1, of: .whitespace)
        var lastNewline = -1
        for k in i..<runEnd where s[k] == "\r" || s[k] == "\n" {
            lastNewline = k
        }
        if lastNewline >= 0 {
            return lastNewline + 1
        }
        return whitespaceMatch(s, at: i)
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the whole run if it ends the text, else the run
    /// less its last scalar (which then leads the next piece), else the single scalar.
    private static func whitespaceMatch(_ s: [Unicode.Scalar], at i: Int) -> Int {
        let end = runEnd(s, from: i + 1, of: .whitespace)
        if end == s.count || end - i == 1 {
            return end
        }
        return end - 1
    }

    /// The end of the run of `cls` scalars starting at `from`.
    @inline(__always)
    private static func runEnd(_ s: [Unicode.Scalar], from: Int, of cls: CharacterClass) -> Int {
        var end = from
        while end < s.count && CharacterClass.of(s[end]) == cls {
            end += 1
        }
        return end
    }

    /// The end of `'s|'t|'re|'ve|'m|'ll|'d` at the apostrophe `i`, or nil. Case-insensitive
    /// matching uses Unicode simple case folding as Oniguruma does, so `ſ` (long s) matches `s`.
    private static func contractionEnd(
        _ s: [Unicode.Scalar], at i: Int, caseInsensitive: Bool
    ) -> Int? {
        func folded(_ k: Int) -> Unicode.Scalar? {
            guard k < s.count else { return nil }
            let scalar = s[k]
            guard caseInsensitive else { return scalar }
            if scalar == "\u{017F}" { return "s" }
            if scalar.value >= 0x41 && scalar.value <= 0x5A {
                return Unicode.Scalar(scalar.value + 0x20)
            }
            return scalar
        }
        guard let first = folded(i + 1) else { return nil }
        switch first {
        case "s", "t", "m", "d":
            return i + 2
        case "r", "v":
            return folded(i + 2) == "e" ? i + 3 : nil
        case "l":
            return folded(i + 2) == "l" ? i + 3 : nil
        default:
            return nil
        }
    }
}
