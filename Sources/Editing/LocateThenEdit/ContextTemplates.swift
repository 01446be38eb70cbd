import Models
import TensorCore

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
            templates += try sampled(
                model, starts: Array(repeating: [start], count: count), keepStart: false,
                length: length, topK: topK, seed: seed &+ sample)
            sample += UInt64(count)
        }
        return templates
    }

    /// MEMIT's templates (METHODS.md §3): `"{}"` and one top-k-sampled text of `length` tokens
    /// from each start word, the start word included.
    public static func generate(
        _ model: LanguageModel, startingWith words: [String] = ["The", "Therefore", "Because", "I", "You"],
        length: Int = 10, topK: Int = 5, seed: UInt64
    ) throws -> [String] {
        let starts = words.map { model.encode($0) }
        return try ["{}"] + sampled(model, starts: starts, keepStart: true, length: length, topK: topK, seed: seed)
    }

    /// One sampled text per start, `length` tokens with the start, as `"<text>. {}"`.
    private static func sampled(
        _ model: LanguageModel, starts: [[Int]], keepStart: Bool, length: Int, topK: Int, seed: UInt64
    ) throws -> [String] {
        let samplers = starts.indices.map { i in Sampler(GenerationOptions(temperature: 1, topK: topK, seed: seed &+ UInt64(i))) }
        let generated = try model.continuations(
            starts, maxTokens: max(0, length - (starts.map(\.count).max() ?? 0)),
            stopTokens: [], samplers: samplers)
        return zip(starts, generated).map { start, ids in
            let text = model.tokenizer.decode((keepStart ? start : []) + ids, skipSpecialTokens: true)
                .replacingOccurrences(of: "{", with: " ").replacingOccurrences(of: "}", with: " ")
            return text + ". {}"
        }
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

extension EditRequest {
    /// Up to `count` rewordings of the prompt, each with one word left out: a word before or
    /// after the subject, never the subject's and never the last (where the answer follows),
    /// chosen in a `seed`-shuffled order. The value optimisation fits δ to these beside the
    /// prompt (`prompt_variants`), so it does not fit one exact wording of the question.
    func wordDropoutVariants(_ count: Int, seed: UInt64) -> [EditRequest] {
        guard count > 0, let own = template else { return [] }
        let words = own.split(separator: " ", omittingEmptySubsequences: false)
        var droppable = words.indices.dropLast().filter { !words[$0].contains("{}") && !words[$0].isEmpty }
        var generator = SplitMix64(seed: seed)
        droppable.shuffle(using: &generator)
        return droppable.prefix(count).map { dropped in
            var copy = self
            copy.prompt = words.indices.filter { $0 != dropped }.map { String(words[$0]) }.joined(separator: " ")
            return copy
        }
    }
}
