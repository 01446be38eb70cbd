import Editing
import Foundation
import Models

/// A fact stated as a cloze prompt whose continuation is the attribute (ROME's
/// `known_1000.json`: "Vinson Massif is located in the continent of" → "Antarctica").
public struct KnownFact: Sendable, Hashable, Codable {
    public var id: String
    public var subject: String
    public var prompt: String
    public var attribute: String

    public init(id: String, subject: String, prompt: String, attribute: String) {
        self.id = id
        self.subject = subject
        self.prompt = prompt
        self.attribute = attribute
    }
}

/// A file of known facts: ROME's `known_1000.json` layout, a JSON list of
/// `{known_id, subject, prompt, attribute, …}` (other fields ignored).
public struct KnownFactsFile: Sendable {
    public var path: String
    public var sha256: String
    public var facts: [KnownFact]

    public static func load(path: String) throws(DatasetError) -> KnownFactsFile {
        let file = try DatasetFile(path: path)
        var facts: [KnownFact] = []
        var ids = CaseIDs()
        for (index, value) in try file.records().enumerated() {
            var record = try RecordReader(value, file: path, location: .init(index: index))
            let id = try record.id("known_id")
            try ids.insert(id, field: "known_id", of: record)
            record.location.caseID = id
            facts.append(
                KnownFact(
                    id: id, subject: try record.string("subject"), prompt: try record.string("prompt"),
                    attribute: try record.string("attribute")))
        }
        return KnownFactsFile(path: path, sha256: file.sha256, facts: facts)
    }
}

/// Known-fact retention: of the facts the unedited model answers correctly, the share it still
/// answers the same way after an edit. The plainest measure of what an edit broke.
///
/// A fact counts as known when the unedited model's greedy continuation of its prompt, as many
/// tokens as the attribute has, matches the attribute (normalised exact match, as the
/// generation-based metrics). After an edit it is retained when the greedy continuation is the
/// same token sequence. Prompts are plain text (no chat template): they are completions.
public struct KnownFactRetention: Sendable {
    /// A known fact and the unedited model's answer tokens.
    public struct Baseline: Sendable, Codable, Hashable {
        public var fact: KnownFact
        public var answer: [Int]
    }

    /// The facts the unedited model knows, in file order.
    public let known: [Baseline]
    /// How many facts were tried.
    public let tried: Int

    /// Greedy answers are generated this many prompts at a time (bounds the KV caches' memory).
    static let group = 128

    /// Selects the facts `model`, as it is now, answers correctly.
    public init(model: LanguageModel, facts: [KnownFact]) throws {
        let answers = try Self.answers(model: model, facts: facts)
        known = zip(facts, answers).compactMap { fact, answer in
            let text = model.tokenizer.decode(answer, skipSpecialTokens: true)
            return TextMetrics.generatedAnswerMatches(generated: text, answers: [fact.attribute])
                ? Baseline(fact: fact, answer: answer) : nil
        }
        tried = facts.count
    }

    /// Retention on `model` as it is now, leaving out facts about the edited subjects (their
    /// answers are meant to change): the share kept, and the ids of the facts whose answer
    /// changed. Nil when no known fact is left to measure.
    public func measure(model: LanguageModel, editedSubjects: Set<String>) throws -> (retention: Double, changed: [String])? {
        let considered = known.filter { !editedSubjects.contains($0.fact.subject) }
        guard !considered.isEmpty else { return nil }
        let answers = try Self.answers(model: model, facts: considered.map(\.fact))
        let changed = zip(considered, answers).filter { $0.answer != $1 }.map(\.0.fact.id)
        return (Double(considered.count - changed.count) / Double(considered.count), changed)
    }

    /// The greedy continuation of each fact's prompt, as many tokens as its attribute has (fewer
    /// when a stop token comes first).
    static func answers(model: LanguageModel, facts: [KnownFact]) throws -> [[Int]] {
        let prompts = facts.map { model.encode($0.prompt) }
        let lengths = facts.map { max(1, model.encodeContinuation(EditRequest.continuation($0.attribute)).count) }
        var answers = Array(repeating: [Int](), count: facts.count)
        // One call per answer length, so that every prompt gets exactly its own budget.
        for length in Set(lengths).sorted() {
            let indices = facts.indices.filter { lengths[$0] == length }
            for start in stride(from: 0, to: indices.count, by: group) {
                let part = Array(indices[start..<min(indices.count, start + group)])
                let outputs = try model.greedyContinuations(
                    part.map { prompts[$0] }, maxTokens: length,
                    stopTokens: model.tokenizer.stopTokenIDs)
                for (i, output) in zip(part, outputs) { answers[i] = output }
            }
        }
        return answers
    }
}
