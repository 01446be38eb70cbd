import Foundation

/// Metrics on generated text: fluency (n-gram entropy, METHODS.md §8.3) and generation-based
/// exact match (MQuAKE answers, realistic-generation checks).
public enum TextMetrics {
    // MARK: Fluency

    /// The words of `text` as `nltk.word_tokenize` splits them, approximately (``WordSplitter``).
    public static func words(_ text: String) -> [String] {
        WordSplitter.words(text)
    }

    /// H_n = −Σ f log₂ f over the relative frequencies f of the distinct n-grams of `words`
    /// (0 when there are fewer than n words, as ROME's numpy code gives).
    public static func nGramEntropy(_ words: [String], n: Int) -> Double {
        guard n > 0, words.count >= n else { return 0 }
        var counts: [[String]: Int] = [:]
        for start in 0...(words.count - n) { counts[Array(words[start..<start + n]), default: 0] += 1 }
        let total = Double(words.count - n + 1)
        return counts.values.reduce(0) { sum, count in
            let f = Double(count) / total
            return sum - f * log2(f)
        }
    }

    /// ROME's generation entropy of one text (`compute_n_gram_entropy`): the arithmetic mean of
    /// 2/3·H₂ and 4/3·H₃ over its words (``WordSplitter``, case kept as ROME does), i.e.
    /// H₂/3 + 2·H₃/3. Repetitive text scores low.
    public static func generationEntropy(_ text: String) -> Double {
        generationEntropy(words: WordSplitter.words(text))
    }

    /// ``generationEntropy(_:)`` of text already split into words.
    public static func generationEntropy(words: [String]) -> Double {
        (2.0 / 3.0 * nGramEntropy(words, n: 2) + 4.0 / 3.0 * nGramEntropy(words, n: 3)) / 2
    }

    /// The mean generation entropy over several generations (ROME's `n_gram_entropy`, "arith");
    /// nil for none, where numpy's mean would be NaN.
    public static func meanGenerationEntropy(_ texts: [String]) -> Double? {
        guard !texts.isEmpty else { return nil }
        return texts.map(generationEntropy).reduce(0, +) / Double(texts.count)
    }

    // MARK: Exact match of generated answers

    /// SQuAD's answer normalisation: lowercase, remove punctuation (ASCII punctuation as SQuAD,
    /// plus Unicode punctuation such as curly quotes and dashes, which models emit), drop the
    /// articles a/an/the, collapse whitespace. `"The U.K."` → `"uk"`.
    public static func normalizedAnswer(_ text: String) -> String {
        let kept = text.lowercased().unicodeScalars.filter { !isPunctuation($0) }
        return String(String.UnicodeScalarView(kept))
            .split(whereSeparator: \.isWhitespace)
            .filter { !["a", "an", "the"].contains($0) }
            .joined(separator: " ")
    }

    /// Whether a generation gives one of `answers`: its normalised text equals a normalised
    /// answer or starts with one followed by a word boundary ("paris is the capital" matches
    /// "Paris"; "parisian" does not). Answers that normalise to nothing never match.
    public static func generatedAnswerMatches(generated: String, answers: [String]) -> Bool {
        let text = normalizedAnswer(generated)
        return answers.contains { answer in
            let expected = normalizedAnswer(answer)
            return !expected.isEmpty && (text == expected || text.hasPrefix(expected + " "))
        }
    }

    /// Python's `string.punctuation`, plus Unicode punctuation.
    private static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return asciiPunctuation.contains(scalar) }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    private static let asciiPunctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".unicodeScalars)
}
