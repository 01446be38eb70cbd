import Models
import TensorCore

/// Text the model writes itself: the source of statistics when no corpus is given.
///
/// Each window starts at the document-separator token (`<|endoftext|>` when the vocabulary has
/// it, else BOS: METHODS.md §2.1 notes that SmolLM2-Instruct's BOS is a chat marker, not a
/// neutral start) and is sampled with top-k sampling from its own seed, until `maxLength`
/// tokens or a stop token. Windows are generated in batches (one forward pass per step for
/// the whole batch), so the cost is about that of decoding one sequence per step.
public struct ModelSampling: Sendable {
    public var topK = 40
    public var temperature: Float = 1
    public var seed: UInt64
    /// Sequences decoded together.
    public var batchSize = 64

    public init(seed: UInt64) { self.seed = seed }

    /// The token every window starts from, and its spelling.
    public static func startToken(_ model: LanguageModel) throws -> (id: Int, text: String) {
        let tokenizer = model.tokenizer
        guard let id = tokenizer.id(of: "<|endoftext|>") ?? tokenizer.bosTokenID ?? tokenizer.eosTokenID else {
            throw StatisticsError.invalidOption(detail: "the tokenizer names no <|endoftext|>, BOS or EOS token to sample model text from")
        }
        return (id, tokenizer.tokenString(id) ?? "?")
    }

    /// How the text was drawn: the corpus field of the statistics key.
    public func description(_ model: LanguageModel) throws -> String {
        let start = try Self.startToken(model)
        return
            "model samples: top-k \(topK), temperature \(temperature), seed \(seed), from \(start.text) (id \(start.id)), batches of \(batchSize)"
    }

    /// Window scheme for the statistics key.
    public static func scheme(maxLength: Int) -> String {
        "sampled windows of up to \(maxLength) tokens, each ending at a stop token, last window shortened"
    }

    /// Samples windows until they hold `samples` tokens (the last one shortened).
    ///
    /// Up to ``batchSize`` windows are decoded together; a finished window's slot goes to the
    /// next window at once, so short windows (an early stop token) never leave the batch
    /// running a few stragglers. Window `i` samples from seed `seed + i`, and the windows kept
    /// are the first ones by index, so the result does not depend on the scheduling.
    ///
    /// - Parameter progress: tokens of the finished windows (at most `samples`) and `samples`.
    public func windows(
        _ model: LanguageModel, samples: Int, maxLength: Int, progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> [[Int]] {
        let start = try Self.startToken(model).id
        let stops = model.tokenizer.stopTokenIDs
        let length = min(maxLength, model.config.contextLength)
        let v = model.config.vocabularySize
        struct Slot {
            let index: Int
            var tokens: [Int]
            var sampler: Sampler
            let cache: KVCache
        }
        var finished: [Int: [Int]] = [:]
        var slots: [Slot] = []
        var finishedTokens = 0
        while finishedTokens < samples || !slots.isEmpty {
            // Start windows while the running ones, even at full length, could not fill the sample.
            while slots.count < batchSize && finishedTokens + length * slots.count < samples {
                let index = finished.count + slots.count
                let options = GenerationOptions(temperature: temperature, topK: topK, seed: seed &+ UInt64(index))
                slots.append(
                    Slot(
                        index: index, tokens: [start], sampler: Sampler(options),
                        cache: KVCache(config: model.config, capacity: length)))
            }
            if slots.isEmpty { break }
            let logits = try model.transformer.forward(slots.map { [$0.tokens.last!] }, caches: slots.map(\.cache), logits: .last)
            for row in slots.indices {
                let token = slots[row].sampler.next(logits.pointer + row * v, count: v)
                slots[row].tokens.append(token)
            }
            for slot in slots where slot.tokens.count >= length || stops.contains(slot.tokens.last!) {
                finished[slot.index] = slot.tokens
                finishedTokens += slot.tokens.count
            }
            slots.removeAll { finished[$0.index] != nil }
            progress(min(finishedTokens, samples), samples)
        }
        return TokenWindows.take((0..<finished.count).map { finished[$0]! }, samples: samples)
    }
}
