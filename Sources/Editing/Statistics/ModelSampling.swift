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
    public var batchSize = 32

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
        return "model samples: top-k \(topK), temperature \(temperature), seed \(seed), from \(start.text) (id \(start.id)), batches of \(batchSize)"
    }

    /// Window scheme for the statistics key.
    public static func scheme(maxLength: Int) -> String {
        "sampled windows of up to \(maxLength) tokens, each ending at a stop token, last window shortened"
    }

    /// Samples windows until they hold `samples` tokens (the last one shortened).
    ///
    /// - Parameter progress: tokens sampled so far and `samples`.
    public func windows(
        _ model: LanguageModel, samples: Int, maxLength: Int, progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> [[Int]] {
        let start = try Self.startToken(model).id
        let stops = model.tokenizer.stopTokenIDs
        var windows: [[Int]] = [], total = 0
        while total < samples {
            // No more sequences than the remaining tokens could fill.
            let count = min(batchSize, (samples - total + maxLength - 1) / maxLength)
            let group = try sampleGroup(model, first: windows.count, count: count, start: start, stops: stops,
                                        maxLength: maxLength)
            windows += group
            total += group.reduce(0) { $0 + $1.count }
            progress(min(total, samples), samples)
        }
        return TokenWindows.take(windows, samples: samples)
    }

    /// Windows `first..<first + count`, decoded together; window `i` samples from seed `seed + i`.
    private func sampleGroup(
        _ model: LanguageModel, first: Int, count: Int, start: Int, stops: Set<Int>, maxLength: Int
    ) throws -> [[Int]] {
        let length = min(maxLength, model.config.contextLength)
        var sequences = Array(repeating: [start], count: count)
        var samplers = (0..<count).map {
            Sampler(GenerationOptions(temperature: temperature, topK: topK, seed: seed &+ UInt64(first + $0)))
        }
        let caches = (0..<count).map { _ in KVCache(config: model.config, capacity: length) }
        var active = length > 1 ? Array(0..<count) : []
        var inputs = sequences
        let v = model.config.vocabularySize
        while !active.isEmpty {
            let logits = try model.transformer.forward(active.map { inputs[$0] }, caches: active.map { caches[$0] }, logits: .last)
            var next: [Int] = []
            for (row, s) in active.enumerated() {
                let token = samplers[s].next(logits.pointer + row * v, count: v)
                sequences[s].append(token)
                inputs[s] = [token]
                if sequences[s].count < length && !stops.contains(token) { next.append(s) }
            }
            active = next
        }
        return sequences
    }
}
