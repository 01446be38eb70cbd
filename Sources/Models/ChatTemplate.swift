/// Renders chat messages in an instruct model's prompt format.
///
/// GGUF and tokenizer_config.json carry the format as a Jinja template; IBKE recognises the
/// common families from the template's literal markers rather than running Jinja: ChatML
/// (`<|im_start|>`: SmolLM2, Qwen2), Llama 3 (`<|start_header_id|>`) and Llama 2 / Mistral
/// (`[INST]`). A ChatML template's built-in default system prompt is kept, as SmolLM2's is.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable { case chatML, llama3, instruct }
    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    public let family: Family
    /// The system message the template inserts when the conversation has none.
    public let defaultSystemPrompt: String?

    /// Recognises a template; nil for a family IBKE does not know.
    public init?(template: String) {
        if template.contains("<|im_start|>") {
            family = .chatML
            defaultSystemPrompt = Self.literal(in: template, after: "<|im_start|>system\n", before: "<|im_end|>")
        } else if template.contains("<|start_header_id|>") {
            family = .llama3
            defaultSystemPrompt = nil
        } else if template.contains("[INST]") {
            family = .instruct
            defaultSystemPrompt = nil
        } else {
            return nil
        }
    }

    /// The prompt text for `messages`, ending where the assistant's reply begins.
    public func render(_ messages: [Message]) -> String {
        var messages = messages
        if let system = defaultSystemPrompt, messages.first?.role != "system" {
            messages.insert(Message(role: "system", content: system), at: 0)
        }
        switch family {
        case .chatML:
            return messages.map { "<|im_start|>\($0.role)\n\($0.content)<|im_end|>\n" }.joined()
                + "<|im_start|>assistant\n"
        case .llama3:
            return "<|begin_of_text|>"
                + messages.map {
                    "<|start_header_id|>\($0.role)<|end_header_id|>\n\n\($0.content)<|eot_id|>"
                }.joined() + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        case .instruct:
            var text = "<s>"
            var system = ""
            for message in messages {
                switch message.role {
                case "system": system = message.content + "\n\n"
                case "user":
                    text += "[INST] \(system)\(message.content) [/INST]"
                    system = ""
                default: text += " \(message.content)</s>"
                }
            }
            return text
        }
    }

    /// A string literal in the template between two markers, if any (the default system
    /// prompt of a ChatML template sits in a `{{ '…' }}` expression).
    private static func literal(in template: String, after start: String, before end: String) -> String? {
        guard let open = template.range(of: start),
            let close = template.range(of: end, range: open.upperBound..<template.endIndex)
        else { return nil }
        let text = String(template[open.upperBound..<close.lowerBound])
        return text.contains("{") || text.contains("'") || text.contains("+") ? nil : text
    }
}
