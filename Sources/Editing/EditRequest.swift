import Models

/// One fact to write into a model: "`prompt` (about `subject`) → `targetNew`".
///
/// The prompt is either a template with `{}` where the subject goes (ROME's
/// `requested_rewrite.prompt`) or the finished text containing the subject (EasyEdit,
/// zsRE); ``text`` is the finished text either way. Targets are continuations: a leading
/// space is added before tokenising unless they start with whitespace, as in every reference
/// implementation.
public struct EditRequest: Sendable, Hashable, Codable {
    public var prompt: String
    public var subject: String
    public var targetNew: String
    /// The fact being replaced, when known (CounterFact's `target_true`).
    public var targetTrue: String?

    public init(prompt: String, subject: String, targetNew: String, targetTrue: String? = nil) {
        self.prompt = prompt
        self.subject = subject
        self.targetNew = targetNew
        self.targetTrue = targetTrue
    }

    /// The prompt with the subject filled in.
    public var text: String {
        prompt.contains("{}") ? prompt.replacingFirst("{}", with: subject) : prompt
    }

    /// The prompt as a template with `{}` at the subject's first occurrence (nil when the
    /// subject does not occur).
    public var template: String? {
        if prompt.contains("{}") { return prompt }
        guard let range = prompt.range(of: subject) else { return nil }
        return prompt.replacingCharacters(in: range, with: "{}")
    }

    enum CodingKeys: String, CodingKey {
        case prompt, subject
        case targetNew = "target_new"
        case targetTrue = "target_true"
    }
}

/// An ``EditRequest`` checked against a model and tokenised.
public struct PreparedRequest: Sendable, Hashable {
    public let request: EditRequest
    /// Tokens of the finished prompt (with the BOS the tokenizer adds).
    public let prompt: [Int]
    /// Tokens of `" " + targetNew`.
    public let target: [Int]
    /// Tokens of `" " + targetTrue`, when given.
    public let targetTrue: [Int]?
    /// Index in ``prompt`` of the subject's last token (ROME's `subject_last`).
    public let subjectLast: Int
}

/// Why an edit request cannot be used on a model.
public enum EditRequestError: Error, CustomStringConvertible, Equatable {
    case emptyField(String, request: Int)
    case subjectNotInPrompt(subject: String, prompt: String, request: Int)
    case promptTooLong(tokens: Int, limit: Int, request: Int)

    public var description: String {
        switch self {
        case .emptyField(let field, let i):
            "edit request \(i): `\(field)` is empty"
        case .subjectNotInPrompt(let subject, let prompt, let i):
            "edit request \(i): the subject \"\(subject)\" does not occur in the prompt \"\(prompt)\""
        case .promptTooLong(let tokens, let limit, let i):
            "edit request \(i): prompt and target take \(tokens) tokens; the model's context holds \(limit)"
        }
    }
}

extension EditRequest {
    /// Validates the request and tokenises it for `model`.
    ///
    /// - Parameter index: the request's position, for error messages.
    /// - Throws: ``EditRequestError`` for an empty prompt, subject or target, a subject that
    ///   does not occur in the prompt, or a prompt and target longer than the context.
    public func prepared(for model: LanguageModel, index: Int = 0) throws -> PreparedRequest {
        for (field, value) in [("prompt", prompt), ("subject", subject), ("target_new", targetNew)]
        where value.allSatisfy(\.isWhitespace) {
            throw EditRequestError.emptyField(field, request: index)
        }
        if let targetTrue, targetTrue.allSatisfy(\.isWhitespace) {
            throw EditRequestError.emptyField("target_true", request: index)
        }
        guard let template, let slot = template.range(of: "{}") else {
            throw EditRequestError.subjectNotInPrompt(subject: subject, prompt: prompt, request: index)
        }
        let text = self.text
        let promptTokens = model.encode(text)
        let target = model.encodeContinuation(Self.continuation(targetNew))
        let targetTrue = self.targetTrue.map { model.encodeContinuation(Self.continuation($0)) }
        let longest = promptTokens.count + max(target.count, targetTrue?.count ?? 0)
        guard longest <= model.config.contextLength else {
            throw EditRequestError.promptTooLong(tokens: longest, limit: model.config.contextLength, request: index)
        }
        // The subject's last token: tokenise the text up to the end of the subject exactly as
        // it appears in the prompt (a leading space belongs to the following token in byte-level
        // BPE, so the prefix's last token is the subject's).
        let subjectEnd = template[..<slot.lowerBound] + subject
        let prefix = model.encode(String(subjectEnd))
        let subjectLast = min(prefix.count, promptTokens.count) - 1
        return PreparedRequest(
            request: self, prompt: promptTokens, target: target, targetTrue: targetTrue,
            subjectLast: max(0, subjectLast))
    }

    /// A target as a continuation: with one leading space unless it has whitespace already.
    public static func continuation(_ target: String) -> String {
        target.first?.isWhitespace == true ? target : " " + target
    }
}

extension String {
    /// The string with the first occurrence of `target` replaced.
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}
