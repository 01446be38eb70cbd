import Models

/// ROME's context templates (METHODS.md §2.1): `"{}"` plus short texts the model itself
/// generates from the document separator, each as `"<text>. {}"`, so keys and values are
/// averaged over contexts rather than tied to one exact prompt.
public enum ContextTemplates {
    /// `"{}"` and, for each `(length, count)`, `count` top-k-sampled continuations whose whole
    /// sequence (start token included) has `length` tokens.
    ///
    /// The start is `<|endoftext|>` when the vocabulary has it (the references' document
    /// separator; on SmolLM2 the BOS is a chat token), else the BOS. The start token is not
    /// part of the template text, and braces are removed from the generated text.
    public static func generate(
        _ model: LanguageModel, lengths: [(length: Int, count: Int)], topK: Int = 5, seed: UInt64
    ) throws -> [String] {
        let start = model.tokenizer.id(of: "<|endoftext|>") ?? model.tokenizer.bosTokenID ?? 0
        var templates = ["{}"]
        var sample: UInt64 = 0
        for (length, count) in lengths {
            let samplers = (0..<count).map { i in
                Sampler(GenerationOptions(temperature: 1, topK: topK, seed: seed &+ sample &+ UInt64(i)))
            }
            sample += UInt64(count)
            let generated = try model.continuations(Array(repeating: [start], count: count), maxTokens: max(0, length - 1),
                                                    stopTokens: [], samplers: samplers)
            for ids in generated {
                let text = model.tokenizer.decode(ids, skipSpecialTokens: true)
                    .replacingOccurrences(of: "{", with: " ").replacingOccurrences(of: "}", with: " ")
                templates.append(text + ". {}")
            }
        }
        return templates
    }
}

extension EditRequest {
    /// The request with its prompt placed in a context template (`"<text>. {}"`), the subject
    /// still marked, so ``prepared(for:index:)`` finds the subject's last token in context.
    func inContext(_ template: String) -> EditRequest? {
        guard let own = self.template else { return nil }
        var copy = self
        copy.prompt = template.replacingFirst("{}", with: own)
        return copy
    }
}
