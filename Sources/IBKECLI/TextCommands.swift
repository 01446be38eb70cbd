import ArgumentParser
import Foundation
import Models
import Tokenizers

/// `ibke tokenize`: token ids and pieces of a text.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show how the model's tokenizer splits a text.")

    @OptionGroup var model: ModelOptions
    @Argument(help: "The text.") var text: String
    @Flag(help: "Print only the ids, space-separated.") var idsOnly = false
    @Flag(help: "Do not add the BOS/EOS the tokenizer is configured to add.") var noSpecial = false

    func run() throws {
        // Only the tokenizer is used: the weights stay mapped, not dequantized.
        let loaded = try model.load(precision: .native)
        let ids = loaded.tokenizer.encode(text, addSpecialTokens: !noSpecial)
        if idsOnly {
            print(ids.map(String.init).joined(separator: " "))
            return
        }
        for id in ids {
            let piece = loaded.tokenizer.decode([id], skipSpecialTokens: false)
            print("\(id)\t\(loaded.tokenizer.tokenString(id) ?? "?")\t\(piece.debugDescription)")
        }
        log("\(ids.count) tokens")
    }
}

/// Options of text generation shared by `generate` and later the editing commands.
struct GenerationArguments: ParsableArguments {
    @Option(help: "Most new tokens.") var maxTokens = 64
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Sample among the k most likely tokens (0: all).") var topK = 0
    @Option(help: "Nucleus sampling: the smallest set of tokens with this much probability.") var topP: Float = 1
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Flag(help: "Wrap the prompt in the model's chat template (an instruct model's user turn).") var chat = false
    @Option(help: "System message with --chat (default: the template's own).") var system: String?

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
    }

    var options: GenerationOptions {
        GenerationOptions(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, seed: seed)
    }

    /// The prompt text the model sees.
    func promptText(_ prompt: String, for model: LanguageModel) throws -> String {
        guard chat else { return prompt }
        guard let source = model.tokenizer.chatTemplate else {
            throw CLIError("\(model.url.lastPathComponent): --chat needs a chat template, and this model has none")
        }
        guard let template = ChatTemplate(template: source) else {
            throw CLIError("\(model.url.lastPathComponent): unrecognised chat template (supported: ChatML, Llama 3, [INST])")
        }
        var messages: [ChatTemplate.Message] = []
        if let system { messages.append(.init(role: "system", content: system)) }
        messages.append(.init(role: "user", content: prompt))
        return template.render(messages)
    }
}

/// `ibke generate`: continue a prompt, streaming the text.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a continuation of a prompt (greedy by default), streamed to standard output.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var generation: GenerationArguments
    @Argument(help: "The prompt.") var prompt: String
    @Flag(help: "Also print the generated token ids (to standard error).") var showIds = false

    func run() throws {
        let loaded = try model.load()
        let text = try generation.promptText(prompt, for: loaded)
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try loaded.generateText(text, options: generation.options) { emit($0) }
        emit("\n")
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if showIds { log("ids: \(result.ids.map(String.init).joined(separator: " "))") }
        log(
            String(
                format: "%d tokens in %.2f s (%.1f tokens/s, prompt included)", result.ids.count, seconds,
                Double(result.ids.count) / seconds))
    }
}

/// `ibke score`: log-probability of a target after a prompt.
struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a target continuation after a prompt (teacher forcing): per-token and total log-probability.")

    @OptionGroup var model: ModelOptions
    @Option(help: "The prompt.") var prompt: String
    @Option(help: "The continuation to score (a leading space is usual: \" Paris\").") var target: String
    @Option(help: "Also list the k most likely next tokens after the prompt.") var top = 5
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable {
        struct Token: Encodable {
            let id: Int
            let piece: String
            let logProb: Float
            let argmax: Int
            let argmaxPiece: String
        }
        struct Candidate: Encodable {
            let id: Int
            let piece: String
            let probability: Float
        }
        let prompt: String, target: String
        let tokens: [Token]
        let totalLogProb: Float, probability: Float, tokenAccuracy: Float
        let topNext: [Candidate]
    }

    func run() throws {
        let loaded = try model.load()
        let promptIDs = loaded.encode(prompt)
        let targetIDs = loaded.encodeContinuation(target)
        guard !targetIDs.isEmpty else { throw CLIError("--target: the target is empty") }
        guard !promptIDs.isEmpty else { throw CLIError("--prompt: the prompt is empty") }
        let score = try loaded.score([ContinuationRequest(prompt: promptIDs, target: targetIDs)])[0]
        let piece = { (id: Int) in loaded.tokenizer.decode([id], skipSpecialTokens: false) }
        let report = Report(
            prompt: prompt, target: target,
            tokens: zip(targetIDs, zip(score.tokenLogProbs, score.argmaxTokens)).map {
                .init(id: $0, piece: piece($0), logProb: $1.0, argmax: $1.1, argmaxPiece: piece($1.1))
            },
            totalLogProb: score.totalLogProb, probability: exp(score.totalLogProb), tokenAccuracy: score.tokenAccuracy,
            topNext: try loaded.topNextTokens(promptIDs, k: top).map { .init(id: $0.id, piece: piece($0.id), probability: exp($0.logProb)) }
        )
        if json {
            print(try jsonString(report))
            return
        }
        for t in report.tokens {
            print(
                String(
                    format: "%-16@ log P = %8.4f   (argmax %@)", t.piece.debugDescription as NSString, t.logProb,
                    t.argmaxPiece.debugDescription as NSString))
        }
        print(
            String(
                format: "total log P = %.4f   P = %.4g   token accuracy %.2f", report.totalLogProb, report.probability, report.tokenAccuracy
            ))
        print(
            "top next tokens: "
                + report.topNext.map { String(format: "%@ %.3f", $0.piece.debugDescription as NSString, $0.probability) }.joined(
                    separator: ", "))
    }
}
