import Editing
import Foundation
import Models

/// What the model did on one probe: the teacher-forced scores of its answer (and of the
/// competing answer), and optionally a greedy generation. Written into every case file so a
/// number in a report can be traced to token level.
public struct ProbeOutcome: Sendable, Codable, Equatable {
    public var role: Probe.Role
    public var prompt: String
    public var target: String
    public var targetTokens: [Int]
    /// The model's argmax at each target position (teacher forced).
    public var argmax: [Int]
    /// Rank of each target token at its position (0: the argmax).
    public var ranks: [Int]
    /// Mean per-token negative log-likelihood of the target.
    public var nll: Double
    /// The same for the competing answer of comparison probes.
    public var alternativeNLL: Double?
    /// Generation mode: the greedy continuation (decoded).
    public var generated: String?
    /// Further accepted answers (MQuAKE aliases), when the probe has any.
    public var aliases: [String]?

    enum CodingKeys: String, CodingKey {
        case role, prompt, target
        case targetTokens = "target_tokens"
        case argmax, ranks, nll
        case alternativeNLL = "alternative_nll"
        case generated, aliases
    }
}

/// Scores probes on a model: prompts tokenised as the edit requests are (a leading space
/// before answers), all of a call's sequences in batched forward passes.
public struct ProbeScorer {
    public let model: LanguageModel
    /// When set, each probe prompt is wrapped as the user turn of this chat template.
    public let chatTemplate: ChatTemplate?
    /// Generation mode: greedy tokens generated after answer probes (0: off).
    public let generationTokens: Int

    public init(model: LanguageModel, chatTemplate: ChatTemplate?, generationTokens: Int) {
        self.model = model
        self.chatTemplate = chatTemplate
        self.generationTokens = generationTokens
    }

    /// The prompt's tokens as the model sees them.
    func promptTokens(_ prompt: String) -> [Int] {
        guard let chatTemplate else { return model.encode(prompt) }
        return model.encode(chatTemplate.render([.init(role: "user", content: prompt)]))
    }

    /// Roles whose answers are generated in generation mode (the others are measured by
    /// comparison or against the pre-edit prediction).
    static let generatedRoles: Set<Probe.Role> = [.reliability, .generality, .portability, .multiHop, .rewrite, .paraphrase]

    /// Outcomes of `probes`, in order.
    public func score(_ probes: [Probe]) throws -> [ProbeOutcome] {
        var requests: [ContinuationRequest] = []
        var prompts: [[Int]] = []
        for probe in probes {
            let prompt = promptTokens(probe.prompt)
            prompts.append(prompt)
            requests.append(ContinuationRequest(prompt: prompt, target: model.encodeContinuation(EditRequest.continuation(probe.target))))
            if let alternative = probe.alternative {
                requests.append(
                    ContinuationRequest(prompt: prompt, target: model.encodeContinuation(EditRequest.continuation(alternative))))
            }
        }
        let scores = try model.score(requests)
        var generations: [Int: String] = [:]
        if generationTokens > 0 {
            let indices = probes.indices.filter { Self.generatedRoles.contains(probes[$0].role) }
            let continuations = try model.greedyContinuations(
                indices.map { prompts[$0] }, maxTokens: generationTokens,
                stopTokens: model.tokenizer.stopTokenIDs)
            for (i, tokens) in zip(indices, continuations) {
                generations[i] = model.tokenizer.decode(tokens, skipSpecialTokens: true)
            }
        }
        var next = 0
        return probes.enumerated().map { i, probe in
            let s = scores[next]
            next += 1
            var alternativeNLL: Double?
            if probe.alternative != nil {
                alternativeNLL = -Double(scores[next].meanLogProb)
                next += 1
            }
            return ProbeOutcome(
                role: probe.role, prompt: probe.prompt, target: probe.target, targetTokens: s.target,
                argmax: s.argmaxTokens, ranks: s.ranks, nll: -Double(s.meanLogProb),
                alternativeNLL: alternativeNLL, generated: generations[i],
                aliases: probe.aliases.isEmpty ? nil : probe.aliases)
        }
    }
}
