import Foundation
import TensorCore
import Tokenizers

/// How to pick each generated token.
public struct GenerationOptions: Sendable {
    /// Most new tokens.
    public var maxTokens: Int = 64
    /// 0 means greedy (argmax); otherwise logits are divided by it before sampling.
    public var temperature: Float = 0
    /// Sample only among the `topK` most likely tokens (0: no limit).
    public var topK: Int = 0
    /// Sample only from the smallest set of tokens whose probability reaches `topP` (1: no limit).
    public var topP: Float = 1
    /// Seed of the sampler, so sampled generations can be reproduced.
    public var seed: UInt64 = 0
    /// Generation stops after one of these (it is included in the result, not in the text).
    public var stopTokens: Set<Int> = []

    public init(
        maxTokens: Int = 64, temperature: Float = 0, topK: Int = 0, topP: Float = 1,
        seed: UInt64 = 0, stopTokens: Set<Int> = []
    ) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.stopTokens = stopTokens
    }
}

/// Picks the next token from logits: greedy, or temperature / top-k / top-p sampling.
public struct Sampler: Sendable {
    public let options: GenerationOptions
    private var random: SplitMix64

    public init(_ options: GenerationOptions) {
        self.options = options
        random = SplitMix64(seed: options.seed)
    }

    public mutating func next(_ logits: UnsafePointer<Float>, count: Int) -> Int {
        if options.temperature <= 0 { return argmax(logits, count: count) }
        let limit = options.topK > 0 ? min(options.topK, count) : count
        // Candidates best first where a limit needs the order (a full sort only for top-p without
        // top-k); plain temperature sampling draws from every token in vocabulary order.
        var candidates =
            limit < count
            ? topK(logits, count: count, k: limit)
            : options.topP < 1 ? Array(0..<count).sorted { logits[$0] > logits[$1] } : Array(0..<count)
        var probabilities = candidates.map { logits[$0] / options.temperature }
        probabilities.withUnsafeMutableBufferPointer { _ = Kernels.softmax($0.baseAddress!, count: $0.count) }
        if options.topP < 1 {
            var cumulative: Float = 0
            var keep = 0
            while keep < probabilities.count {
                cumulative += probabilities[keep]
                keep += 1
                if cumulative >= options.topP { break }
            }
            candidates.removeSubrange(keep...)
            probabilities.removeSubrange(keep...)
        }
        let total = probabilities.reduce(0, +)
        var u = random.nextUnit() * total
        for (candidate, p) in zip(candidates, probabilities) {
            u -= p
            if u < 0 { return candidate }
        }
        return candidates[candidates.count - 1]
    }
}

extension LanguageModel {
    /// Generates up to `options.maxTokens` tokens after `prompt`, with the KV cache.
    ///
    /// - Parameter onToken: called with each new token id; return false to stop.
    /// - Returns: the new token ids (a stop token included when one ended generation).
    @discardableResult
    public func generate(
        prompt: [Int], options: GenerationOptions = GenerationOptions(),
        onToken: (Int) -> Bool = { _ in true }
    ) throws -> [Int] {
        guard !prompt.isEmpty else { throw InferenceError.emptyPrompt(request: 0) }
        let budget = min(options.maxTokens, config.contextLength - prompt.count)
        let cache = KVCache(config: config, capacity: prompt.count + max(0, budget))
        var sampler = Sampler(options)
        var logits = try transformer.forward([prompt], caches: [cache], logits: .last)
        var generated: [Int] = []
        while generated.count < budget {
            let token = sampler.next(logits.pointer, count: config.vocabularySize)
            generated.append(token)
            if !onToken(token) || options.stopTokens.contains(token) { break }
            if generated.count == budget { break }
            logits = try transformer.forward([[token]], caches: [cache], logits: .last)
        }
        return generated
    }

    /// Generates text after `text`, streaming each completed piece of text to `onText`.
    /// Stops at the tokenizer's stop tokens (EOS, `<|im_end|>`, …) as well as `options.stopTokens`.
    public func generateText(
        _ text: String, options: GenerationOptions = GenerationOptions(),
        onText: (String) -> Void = { _ in }
    ) throws -> (ids: [Int], text: String) {
        var options = options
        options.stopTokens.formUnion(tokenizer.stopTokenIDs)
        var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: true)
        var output = ""
        let ids = try generate(prompt: encode(text), options: options) { token in
            if !options.stopTokens.contains(token) {
                let piece = stream.append(token)
                output += piece
                onText(piece)
            }
            return true
        }
        let tail = stream.finish()
        output += tail
        onText(tail)
        return (ids, output)
    }
}

extension LanguageModel {
    /// Greedy continuations of several prompts at once (see
    /// ``continuations(_:maxTokens:stopTokens:samplers:)``).
    public func greedyContinuations(_ prompts: [[Int]], maxTokens: Int, stopTokens: Set<Int>) throws -> [[Int]] {
        try continuations(
            prompts, maxTokens: maxTokens, stopTokens: stopTokens,
            samplers: prompts.map { _ in Sampler(GenerationOptions()) })
    }

    /// Continuations of several prompts at once, each drawn by its own sampler: one ragged
    /// forward pass per step for all unfinished sequences (decoding is bound by reading the
    /// weights, so a step for several sequences costs about as much as for one).
    ///
    /// - Returns: for each prompt, up to `maxTokens` new tokens, ending at (and without) the
    ///   first stop token.
    public func continuations(_ prompts: [[Int]], maxTokens: Int, stopTokens: Set<Int>, samplers: [Sampler]) throws -> [[Int]] {
        precondition(samplers.count == prompts.count, "one sampler per prompt")
        for (i, p) in prompts.enumerated() where p.isEmpty { throw InferenceError.emptyPrompt(request: i) }
        var samplers = samplers
        let budgets = prompts.map { min(maxTokens, config.contextLength - $0.count) }
        let caches = zip(prompts, budgets).map { KVCache(config: config, capacity: $0.count + max(0, $1)) }
        var outputs = Array(repeating: [Int](), count: prompts.count)
        var active = prompts.indices.filter { budgets[$0] > 0 }
        var inputs = prompts
        let v = config.vocabularySize
        while !active.isEmpty {
            let logits = try transformer.forward(active.map { inputs[$0] }, caches: active.map { caches[$0] }, logits: .last)
            var next: [Int] = []
            for (row, s) in active.enumerated() {
                let token = samplers[s].next(logits.pointer + row * v, count: v)
                if stopTokens.contains(token) { continue }
                outputs[s].append(token)
                if outputs[s].count < budgets[s] {
                    inputs[s] = [token]
                    next.append(s)
                }
            }
            active = next
        }
        return outputs
    }
}
