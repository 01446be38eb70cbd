import Foundation
import Models

// The request and response bodies of the OpenAI-compatible routes. Fields a client may send that
// the server does not use are ignored, as OpenAI-compatible servers do; fields it cannot honour
// (`n` > 1) are errors.

/// `stop`: one string or a list of them.
struct StopSequences: Decodable {
    var values: [String]
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            values = [one]
        } else {
            values = try container.decode([String].self)
        }
    }
}

/// The sampling fields common to both completion routes.
struct SamplingFields: Decodable {
    var model: String?
    var max_tokens: Int?
    var max_completion_tokens: Int?
    var temperature: Double?
    var top_p: Double?
    var seed: Int?
    var stop: StopSequences?
    var stream: Bool?
    var n: Int?

    /// The checked options, or a ``ServingError/badRequest(_:)`` naming the field.
    func options(contextLength: Int) throws -> (ModelVariant, GenerationOptions, [String]) {
        let variant = try ModelVariant(requested: model)
        let maxTokens = max_completion_tokens ?? max_tokens ?? min(256, contextLength)
        guard maxTokens > 0 else { throw ServingError.badRequest("max_tokens: must be at least 1") }
        guard maxTokens <= contextLength else {
            throw ServingError.badRequest("max_tokens: \(maxTokens) is more than the model's context of \(contextLength) tokens")
        }
        let temperature = temperature ?? 1
        guard temperature.isFinite, temperature >= 0, temperature <= 2 else {
            throw ServingError.badRequest("temperature: must be between 0 and 2")
        }
        let topP = top_p ?? 1
        guard topP.isFinite, topP > 0, topP <= 1 else { throw ServingError.badRequest("top_p: must be in (0, 1]") }
        if let n, n != 1 { throw ServingError.badRequest("n: only 1 completion per request is supported") }
        let stops = stop?.values ?? []
        guard stops.count <= 4 else { throw ServingError.badRequest("stop: at most 4 sequences") }
        let options = GenerationOptions(
            maxTokens: maxTokens, temperature: Float(temperature), topP: Float(topP),
            seed: UInt64(bitPattern: Int64(seed ?? Int.random(in: 0...Int.max))))
        return (variant, options, stops)
    }
}

extension ModelVariant {
    /// The variant a request's `model` names: `edited` (or nil, or the served model's name
    /// given by a client that does not know ours) or `original`.
    init(requested name: String?) throws {
        guard let name else {
            self = .edited
            return
        }
        guard let variant = ModelVariant(rawValue: name) else {
            throw ServingError.badRequest("model: unknown model \(name.debugDescription); this server has \"edited\" and \"original\"")
        }
        self = variant
    }
}

struct CompletionRequest: Decodable {
    var prompt: String
    var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case prompt }
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try container.decode(String.self, forKey: .prompt)
        sampling = try SamplingFields(from: decoder)
    }
}

struct ChatRequest: Decodable {
    struct Message: Decodable {
        var role: String
        var content: String
    }
    var messages: [Message]
    var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case messages }
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        messages = try container.decode([Message].self, forKey: .messages)
        sampling = try SamplingFields(from: decoder)
    }
}

/// `POST /v1/edits`: one request (`prompt`, `subject`, `target`) or a batch (`requests`).
struct EditBody: Decodable {
    var method: String?
    var prompt: String?
    var subject: String?
    var target: String?
    var requests: [Fact]?

    typealias Fact = EditRecord.Fact

    func facts() throws -> [Fact] {
        switch (requests, prompt, subject, target) {
        case (let batch?, nil, nil, nil): return batch
        case (nil, let p?, let s?, let t?): return [Fact(prompt: p, subject: s, target: t)]
        case (.some, _, _, _): throw ServingError.badRequest("requests: give either requests or prompt, subject and target")
        default:
            let missing = [("prompt", prompt), ("subject", subject), ("target", target)].filter { $0.1 == nil }.map(\.0)
            throw ServingError.badRequest("\(missing.joined(separator: ", ")): required (or requests: a batch)")
        }
    }
}

struct EvaluateBody: Decodable {
    var prompts: [String]
    var max_tokens: Int?
}

struct ExportBody: Decodable {
    var format: String
    var path: String?
    var dtype: String?
}

// MARK: Responses

struct ModelList: Encodable {
    struct Entry: Encodable {
        var id: String
        var object = "model"
        var created: Int
        var owned_by = "ibke"
    }
    var object = "list"
    var data: [Entry]
}

struct Usage: Encodable {
    var prompt_tokens: Int
    var completion_tokens: Int
    var total_tokens: Int
}

struct CompletionChoice: Encodable {
    var index = 0
    var text: String
    var finish_reason: FinishReason?
    var logprobs: String? = nil

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encode(finish_reason, forKey: .finish_reason)  // null while streaming
        try c.encodeNil(forKey: .logprobs)
    }
    enum CodingKeys: String, CodingKey { case index, text, finish_reason, logprobs }
}

struct CompletionResponse: Encodable {
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [CompletionChoice]
    var usage: Usage?
}

struct ChatMessageOut: Encodable {
    var role: String?
    var content: String?
}

struct ChatChoice: Encodable {
    var index = 0
    var message: ChatMessageOut?
    var delta: ChatMessageOut?
    var finish_reason: FinishReason?

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encodeIfPresent(delta, forKey: .delta)
        try c.encode(finish_reason, forKey: .finish_reason)
    }
    enum CodingKeys: String, CodingKey { case index, message, delta, finish_reason }
}

struct ChatResponse: Encodable {
    var id: String
    var object: String
    var created: Int
    var model: String
    var choices: [ChatChoice]
    var usage: Usage?
}

struct EditList: Encodable {
    var object = "list"
    var data: [EditRecord]
}

/// A single edit's report is flat (`prompt`, …, `before`, `after`); a batch's lists one per
/// request under `requests`.
struct EditResponse: Encodable {
    var id: String
    var method: String
    var created: Int
    var seconds: Double
    var single: Outcome?
    var batch: [Outcome]?

    struct Outcome: Encodable {
        var prompt: String
        var subject: String
        var target: String
        var original_answer: String
        var before: EditProbe
        var after: EditProbe
    }

    init(_ report: EditReport) {
        let r = report.record
        (id, method, created, seconds) = (r.id, r.method, r.created, r.seconds)
        let outcomes = zip(r.requests, report.outcomes).map {
            Outcome(
                prompt: $0.prompt, subject: $0.subject, target: $0.target, original_answer: $1.originalAnswer,
                before: $1.before, after: $1.after)
        }
        if outcomes.count == 1 { single = outcomes[0] } else { batch = outcomes }
    }

    enum CodingKeys: String, CodingKey { case id, method, created, seconds, requests }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(method, forKey: .method)
        try c.encode(created, forKey: .created)
        try c.encode(seconds, forKey: .seconds)
        if let single { try single.encode(to: encoder) }
        if let batch { try c.encode(batch, forKey: .requests) }
    }
}

struct Deleted: Encodable {
    var id: String
    var deleted = true
}

struct EvaluateResponse: Encodable {
    struct Result: Encodable {
        var prompt: String
        var original: String
        var edited: String
    }
    var results: [Result]
}

struct Info: Encodable {
    var model: String
    var methods: [String]
    var default_method: String
    var auth: Bool
    var edits: Int
}

struct ErrorBody: Encodable {
    struct Detail: Encodable {
        var message: String
        var type: String
        var code: String?
    }
    var error: Detail
}
