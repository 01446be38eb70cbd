import Editing
import Evaluation
import Foundation
import Models
import TensorCore

/// One meta-training example (IBKE.md §4.1): an edit, the paraphrases it should generalise
/// to, and unrelated prompts whose predictions it must leave alone.
public struct TrainingSample: Sendable {
    public let id: String
    public let edit: PreparedRequest
    /// Paraphrase prompt → the new target (zsRE `rephrase`, CounterFact `rephrase_prompt`).
    public let generality: [ContinuationRequest]
    /// Unrelated prompt → its answer, read at the answer's positions (zsRE `loc`/`loc_ans`,
    /// CounterFact `locality_prompt`/`locality_ground_truth`, and the corpus sentence).
    public let locality: [ContinuationRequest]
    /// Per locality prompt: whether it is a neighbourhood prompt (a hard negative).
    public let neighbourhood: [Bool]
    /// The neighbourhood prompts followed by the edit's new object (which they must not take).
    public var neighbourTargets: [ContinuationRequest] {
        zip(locality, neighbourhood).filter(\.1).map { ContinuationRequest(prompt: $0.0.prompt, target: edit.target) }
    }

    /// The sample's sequences in the order training passes use them: the edit, the
    /// paraphrases, the locality prompts, and with `negatives` the neighbour targets (each
    /// `prompt + target` without its last token).
    public func sequences(negatives: Bool) -> [[Int]] {
        [edit.prompt + edit.target.dropLast()]
            + (generality + locality + (negatives ? neighbourTargets : [])).map { $0.prompt + $0.target.dropLast() }
    }

    /// The positions of a continuation's target tokens in its sequence.
    static func positions(_ c: ContinuationRequest) -> [Int] {
        Array((c.prompt.count - 1)..<(c.prompt.count + c.target.count - 1))
    }

    /// The sample of a zsRE or CounterFact case, or nil for a case without a paraphrase or a
    /// locality prompt. `corpusSentence` adds a locality sample: its first token as prompt and
    /// up to `corpusTokens` further tokens as target.
    public static func make(
        _ evalCase: EvalCase, model: LanguageModel, corpusSentence: String?, corpusTokens: Int
    ) throws -> TrainingSample? {
        guard let request = evalCase.requests.first else { return nil }
        let edit = try request.prepared(for: model)
        func continuation(_ prompt: String, _ target: String) -> ContinuationRequest? {
            let t = model.encodeContinuation(EditRequest.continuation(target))
            return t.isEmpty ? nil : ContinuationRequest(prompt: model.encode(prompt), target: t)
        }
        var generality: [ContinuationRequest] = []
        var locality: [ContinuationRequest] = []
        var neighbourhood: [Bool] = []
        for probe in evalCase.probes {
            switch probe.role {
            case .generality, .paraphrase:
                if let c = continuation(probe.prompt, probe.target) { generality.append(c) }
            case .locality:
                if let c = continuation(probe.prompt, probe.target) {
                    locality.append(c)
                    neighbourhood.append(false)
                }
            case .neighborhood:
                // The neighbour's true object, which the edit must not change.
                if let c = continuation(probe.prompt, probe.alternative ?? probe.target) {
                    locality.append(c)
                    neighbourhood.append(true)
                }
            default:
                continue
            }
        }
        guard !generality.isEmpty, !locality.isEmpty else { return nil }
        if let corpusSentence, corpusTokens > 0 {
            let tokens = model.encode(corpusSentence)
            let first = tokens.first == model.tokenizer.bosTokenID ? 2 : 1
            if tokens.count > first + 1 {
                locality.append(
                    ContinuationRequest(
                        prompt: Array(tokens.prefix(first)),
                        target: Array(tokens.dropFirst(first).prefix(corpusTokens))))
                neighbourhood.append(false)
            }
        }
        return TrainingSample(id: evalCase.id, edit: edit, generality: generality, locality: locality, neighbourhood: neighbourhood)
    }
}

/// Sentences of a text corpus for the corpus locality sample, picked reproducibly.
public struct LocalitySentences: Sendable {
    public let sentences: [String]
    public let label: String

    /// Sentences of at least 40 characters from `corpus`, up to `limit` of them.
    public init(corpus: TextCorpus, limit: Int = 50_000) {
        var sentences: [String] = []
        outer: for document in corpus.documents {
            for piece in document.split(separator: ". ") {
                let s = piece.trimmingCharacters(in: .whitespacesAndNewlines)
                if s.count >= 40 && s.count <= 400 { sentences.append(s + ".") }
                if sentences.count >= limit { break outer }
            }
        }
        self.sentences = sentences
        label = "\(corpus.identity) (sha256 \(corpus.sha256.prefix(8))…)"
    }

    /// The sentence of sample `index` under `seed`.
    public func sentence(for index: Int, seed: UInt64) -> String? {
        guard !sentences.isEmpty else { return nil }
        var rng = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9)
        return sentences[Int(rng.next() % UInt64(sentences.count))]
    }
}
