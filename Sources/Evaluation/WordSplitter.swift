import Foundation

/// Splits text into words the way `nltk.word_tokenize` does, for n-gram entropy (fluency):
/// ROME's numbers come from that tokenizer, and a different splitter shifts them (METHODS.md §8.3).
///
/// `word_tokenize` is Punkt sentence splitting followed by NLTK's Treebank-style word tokenizer
/// on each sentence. The word tokenizer is ported rule by rule (`NLTKWordTokenizer`, NLTK 3.10):
/// punctuation, brackets and quotes become tokens (`"` becomes `` `` `` or `''`), a sentence's
/// final period is split off but `Mr.` or `3.88` inside one are not, `1,000` stays one token,
/// and clitics are split (`don't` → `do n't`, `John's` → `John 's`, `cannot` → `can not`).
///
/// **Approximation:** Punkt's trained English model is replaced by a rule: a sentence ends after
/// `?` or `!`, or after a word ending in `.`, when whitespace follows, unless that word is a
/// common abbreviation (`Mr.`, `e.g.`, `Jan.`), a single-letter initial, or an ellipsis before a
/// lowercase word. Where Punkt decides otherwise, a word keeps or loses its final period, so
/// entropies can differ slightly from the reference; tables should say which splitter was used.
public enum WordSplitter {
    /// The words of `text` (see the type's notes).
    public static func words(_ text: String) -> [String] {
        sentences(text).flatMap(treebankWords)
    }

    // MARK: Sentences (the Punkt approximation)

    /// Abbreviations after which a period does not end a sentence (lowercased, final period
    /// dropped): titles, months, and Latin and company abbreviations, the most frequent members
    /// of Punkt's English abbreviation list.
    static let abbreviations: Set<String> = [
        "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "rev", "gen", "col", "lt", "sgt", "capt", "gov",
        "sen", "rep", "mt", "ft", "vs", "etc", "e.g", "i.e", "cf", "al", "inc", "ltd", "co", "corp", "bros",
        "u.s", "u.k", "a.m", "p.m", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
        "nov", "dec",
    ]

    /// Closing quotes and brackets that may follow sentence-final punctuation and stay with it.
    private static let closers: Set<Character> = ["\"", "'", ")", "]", "}", "»", "”", "’"]

    /// The text cut into sentences at whitespace after sentence-final punctuation.
    static func sentences(_ text: String) -> [String] {
        var sentences: [String] = []
        var start = text.startIndex
        var index = text.startIndex
        while index < text.endIndex {
            guard !text[index].isWhitespace else {
                index = text.index(after: index)
                continue
            }
            let wordStart = index
            while index < text.endIndex, !text[index].isWhitespace { index = text.index(after: index) }
            let word = text[wordStart..<index]
            var next = index
            while next < text.endIndex, text[next].isWhitespace { next = text.index(after: next) }
            guard next < text.endIndex else { break }
            if endsSentence(word, before: text[next]) {
                sentences.append(String(text[start..<index]))
                start = next
            }
            index = next
        }
        let last = text[start...].trimmingCharacters(in: .whitespacesAndNewlines)
        if !last.isEmpty { sentences.append(last) }
        return sentences.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// Whether `word` (a whitespace-delimited chunk) ends its sentence, `next` being the first
    /// character of the following chunk.
    static func endsSentence(_ word: Substring, before next: Character) -> Bool {
        var core = word
        while let last = core.last, closers.contains(last) { core = core.dropLast() }
        guard let last = core.last else { return false }
        if last == "?" || last == "!" { return true }
        guard last == "." else { return false }
        let stem = core.dropLast()
        if stem.hasSuffix(".") { return next.isUppercase }  // an ellipsis
        let bare = stem.drop(while: { !$0.isLetter && !$0.isNumber }).lowercased()
        if bare.count == 1, bare.allSatisfy(\.isLetter) { return false }  // an initial: "J. R. R. Tolkien"
        return !abbreviations.contains(bare)
    }

    // MARK: Words (NLTKWordTokenizer)

    /// One substitution: ICU pattern and template (`$1`, `$0`).
    /// `@unchecked Sendable`: `NSRegularExpression` is immutable and thread-safe, but not declared
    /// `Sendable` by every Foundation this builds with.
    private struct Rule: @unchecked Sendable {
        let regex: NSRegularExpression
        let template: String

        init(_ pattern: String, _ template: String) {
            guard let regex = try? NSRegularExpression(pattern: pattern) else {
                preconditionFailure("invalid tokenizer pattern \(pattern)")
            }
            self.regex = regex
            self.template = template
        }

        func apply(_ text: String) -> String {
            let range = NSRange(text.startIndex..., in: text)
            return regex.stringByReplacingMatches(in: text, range: range, withTemplate: template)
        }
    }

    private static let startingQuotes = [
        Rule("([«“‘„]|[`]+)", " $1 "),
        Rule("^\"", "``"),
        Rule("(``)", " $1 "),
        Rule("([ \\(\\[{<])(\"|'{2})", "$1 `` "),
        Rule("(?i)(?<!\\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\\b)(?=\\w)", "$1 "),
    ]

    private static let punctuation = [
        Rule("([^\\.])(\\.)([\\]\\)}>\"'»”’ ]*+)\\s*$", "$1 $2 $3 "),
        Rule("([:,])([^\\d])", " $1 $2"),
        Rule("([:,])$", " $1 "),
        Rule("\\.{2,}", " $0 "),
        Rule("[;@#$%&]", " $0 "),
        Rule("[\\u2012-\\u2015]", " $0 "),
        Rule("([^\\.])(\\.)([\\]\\)}>\"']*)\\s*$", "$1 $2$3 "),
        Rule("[?!]", " $0 "),
        Rule("([^'])' ", "$1 ' "),
        Rule("[*]", " $0 "),
        Rule("[\\]\\[\\(\\)\\{\\}\\<\\>]", " $0 "),
        Rule("--", " -- "),
    ]

    private static let endingQuotes = [
        Rule("([»”’])", " $1 "),
        Rule("''", " '' "),
        Rule("\"", " '' "),
        Rule("\\s+", " "),
        Rule("([^' ])('[sS]|'[mM]|'[dD]|') ", "$1 $2 "),
        Rule("([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "$1 $2 "),
    ]

    private static let contractions = [
        "(?i)\\b(can)(not)\\b", "(?i)\\b(d)('ye)\\b", "(?i)\\b(gim)(me)\\b", "(?i)\\b(gon)(na)\\b",
        "(?i)\\b(got)(ta)\\b", "(?i)\\b(lem)(me)\\b", "(?i)\\b(more)('n)\\b", "(?i)\\b(wan)(na)(?=\\s)",
        "(?i) ('t)(is)\\b", "(?i) ('t)(was)\\b",
    ].map { Rule($0, " $1 $2 ") }

    /// NLTK's word tokenizer on one sentence.
    static func treebankWords(_ sentence: String) -> [String] {
        var text = sentence
        for rule in startingQuotes + punctuation { text = rule.apply(text) }
        text = " " + text + " "
        for rule in endingQuotes + contractions { text = rule.apply(text) }
        return text.split(whereSeparator: \.isWhitespace).map(String.init)
    }
}
