import Foundation
import Testing

@testable import Evaluation

@Suite struct TextMetricsTests {
    // MARK: Word splitting (expected values from NLTK 3.10's NLTKWordTokenizer, per sentence)

    @Test func splitsWordsLikeNLTK() {
        #expect(
            TextMetrics.words("Good muffins cost $3.88 (roughly 3,36 euros) in New York.  Please buy me\ntwo of them.\nThanks.")
                == [
                    "Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")", "in", "New", "York", ".",
                    "Please", "buy", "me", "two", "of", "them", ".", "Thanks", ".",
                ])
        #expect(
            TextMetrics.words("I don't think John's car can't go -- it cannot.")
                == ["I", "do", "n't", "think", "John", "'s", "car", "ca", "n't", "go", "--", "it", "can", "not", "."])
        #expect(
            TextMetrics.words(#"She said, "Paris is lovely.""#)
                == ["She", "said", ",", "``", "Paris", "is", "lovely", ".", "''"])
        #expect(
            TextMetrics.words("They'll say 'hello' to the kids' teacher.")
                == ["They", "'ll", "say", "'", "hello", "'", "to", "the", "kids", "'", "teacher", "."])
        #expect(
            TextMetrics.words("It's gonna be fine, isn't it?")
                == ["It", "'s", "gon", "na", "be", "fine", ",", "is", "n't", "it", "?"])
        #expect(
            TextMetrics.words("The U.S. economy grew 3%; rates rose. Is it 1,000 or 1.000?")
                == [
                    "The", "U.S.", "economy", "grew", "3", "%", ";", "rates", "rose", ".", "Is", "it", "1,000", "or",
                    "1.000", "?",
                ])
        #expect(TextMetrics.words("") == [])
    }

    @Test func sentencesEndAtFinalPunctuationButNotAbbreviations() {
        #expect(
            WordSplitter.sentences("Mr. Smith arrived at 5:30 p.m. on Jan. 3rd! J. R. R. Tolkien wrote it. Wait... what?")
                == ["Mr. Smith arrived at 5:30 p.m. on Jan. 3rd!", "J. R. R. Tolkien wrote it.", "Wait... what?"])
        #expect(
            TextMetrics.words("Mr. Smith arrived at 5:30 p.m. on Jan. 3rd!")
                == ["Mr.", "Smith", "arrived", "at", "5:30", "p.m.", "on", "Jan.", "3rd", "!"])
        #expect(
            TextMetrics.words("Danielle Darrieux's mother tongue is English. She was born in Paris.")
                == [
                    "Danielle", "Darrieux", "'s", "mother", "tongue", "is", "English", ".", "She", "was", "born", "in",
                    "Paris", ".",
                ])
        #expect(WordSplitter.sentences("He left (at noon.) Then it rained.") == ["He left (at noon.)", "Then it rained."])
    }

    // MARK: n-gram entropy

    @Test func nGramEntropyByHand() {
        // Bigrams ab, ba, ab: frequencies 2/3, 1/3. Trigrams aba, bab: 1/2 each.
        let abab = ["a", "b", "a", "b"]
        let h2 = -(2.0 / 3 * log2(2.0 / 3) + 1.0 / 3 * log2(1.0 / 3))
        #expect(abs(TextMetrics.nGramEntropy(abab, n: 2) - h2) < 1e-12)
        #expect(abs(TextMetrics.nGramEntropy(abab, n: 2) - 0.9182958340544896) < 1e-12)  // numpy
        #expect(TextMetrics.nGramEntropy(abab, n: 3) == 1)
        #expect(abs(TextMetrics.generationEntropy(words: abab) - (h2 / 3 + 2.0 / 3)) < 1e-12)
        #expect(abs(TextMetrics.generationEntropy(words: abab) - 0.9727652780181631) < 1e-12)

        // All distinct: H2 = log2 4, H3 = log2 3.
        let distinct = ["one", "two", "three", "four", "five"]
        #expect(TextMetrics.nGramEntropy(distinct, n: 2) == 2)
        #expect(abs(TextMetrics.generationEntropy(words: distinct) - (2.0 / 3 + 2.0 / 3 * log2(3))) < 1e-12)

        // aa ab ba aa ab: 2/5, 2/5, 1/5 → log2 5 − 0.8; aab aba baa aab: 1/2, 1/4, 1/4 → 1.5.
        let aab = ["a", "a", "b", "a", "a", "b"]
        #expect(abs(TextMetrics.nGramEntropy(aab, n: 2) - (log2(5) - 0.8)) < 1e-12)
        #expect(TextMetrics.nGramEntropy(aab, n: 3) == 1.5)

        // Repetition and too-short texts score 0 (numpy's sum over no n-grams).
        #expect(TextMetrics.generationEntropy(words: ["the", "the", "the", "the"]) == 0)
        #expect(TextMetrics.generationEntropy(words: ["x"]) == 0)
        #expect(TextMetrics.generationEntropy(words: []) == 0)
        #expect(TextMetrics.nGramEntropy(["a", "b"], n: 0) == 0)
    }

    @Test func generationEntropyOfTextAndItsMean() throws {
        // Words: the cat sat on the mat . the cat sat . — bigrams: 2 twice, 6 once (of 10);
        // trigrams: "the cat sat" twice, 7 others once (of 9).
        let text = "the cat sat on the mat. the cat sat."
        let h2 = 0.4 * log2(5) + 0.6 * log2(10)
        let h3 = 2.0 / 9 * log2(9.0 / 2) + 7.0 / 9 * log2(9)
        let expected = h2 / 3 + 2 * h3 / 3
        #expect(abs(TextMetrics.generationEntropy(text) - expected) < 1e-12)
        #expect(abs(TextMetrics.generationEntropy(text) - 2.9391112177758476) < 1e-12)  // numpy

        let mean = try #require(TextMetrics.meanGenerationEntropy([text, "a b a b"]))
        #expect(abs(mean - (expected + 0.9727652780181631) / 2) < 1e-12)
        #expect(TextMetrics.meanGenerationEntropy([]) == nil)
    }

    // MARK: Answer matching

    @Test func normalisesAnswersLikeSQuAD() {
        #expect(TextMetrics.normalizedAnswer("The U.K.") == "uk")
        #expect(TextMetrics.normalizedAnswer("  An   Apple a day, the end!  ") == "apple day end")
        #expect(TextMetrics.normalizedAnswer("“Washington, D.C.”") == "washington dc")
        #expect(TextMetrics.normalizedAnswer("Theatre and anthem") == "theatre and anthem")
        #expect(TextMetrics.normalizedAnswer("Jean-Paul\tSartre\n") == "jeanpaul sartre")
        #expect(TextMetrics.normalizedAnswer("THE") == "")
        #expect(TextMetrics.normalizedAnswer("Zürich") == "zürich")
    }

    @Test func generatedAnswersMatchAtAWordBoundary() {
        #expect(TextMetrics.generatedAnswerMatches(generated: " Paris is the capital.", answers: ["Paris"]))
        #expect(TextMetrics.generatedAnswerMatches(generated: "The Beatles.", answers: ["Madonna", "the Beatles"]))
        #expect(TextMetrics.generatedAnswerMatches(generated: "U.K., of course", answers: ["United Kingdom", "UK"]))
        #expect(!TextMetrics.generatedAnswerMatches(generated: "Parisian food", answers: ["Paris"]))
        #expect(!TextMetrics.generatedAnswerMatches(generated: "It is Paris", answers: ["Paris"]))
        #expect(!TextMetrics.generatedAnswerMatches(generated: "Paris", answers: []))
        #expect(!TextMetrics.generatedAnswerMatches(generated: "the end", answers: ["The", "!"]))
        #expect(!TextMetrics.generatedAnswerMatches(generated: "", answers: ["Paris"]))
    }
}
