import Foundation
import TensorCore
import Testing

@testable import Models

/// The default model loaded with its tokenizer, once per test process.
enum DefaultLanguageModel {
    static let model: LanguageModel? = DefaultModel.isAvailable ? try? LanguageModel.load(DefaultModel.path) : nil
}

@Suite(.enabled(if: DefaultModel.isAvailable, "default model not fetched (ibke model fetch)"))
struct DefaultModelTests {
    @Test func tokenizerReproducesReferenceIDs() throws {
        let model = try #require(DefaultLanguageModel.model)
        for prompt in try ReferenceLogits.load().prompts {
            #expect(model.encode(prompt.text) == prompt.token_ids, "\(prompt.text)")
        }
    }

    @Test func greedyGenerationReproducesReferenceContinuations() throws {
        let model = try #require(DefaultLanguageModel.model)
        for prompt in try ReferenceLogits.load().prompts {
            // transformers' generate stops at EOS (<|im_end|>), as generateText does.
            let options = GenerationOptions(maxTokens: 10, stopTokens: model.tokenizer.stopTokenIDs)
            let ids = try model.generate(prompt: prompt.token_ids, options: options)
            #expect(ids == prompt.greedy_continuation_ids, "\(prompt.text)")
            #expect(model.tokenizer.decode(ids, skipSpecialTokens: false) == prompt.greedy_continuation_text)
        }
    }

    @Test func cachedDecodingMatchesFullForward() throws {
        let model = try #require(DefaultLanguageModel.model)
        let tokens = try ReferenceLogits.load().prompts[4].token_ids
        let full = try model.transformer.forward([tokens], logits: .all)
        let cache = KVCache(config: model.config)
        _ = try model.transformer.forward([Array(tokens[..<7])], caches: [cache], logits: .none)
        var worst: Float = 0
        for t in 7..<tokens.count {
            let step = try model.transformer.forward([[tokens[t]]], caches: [cache], logits: .last)
            for v in 0..<model.config.vocabularySize {
                worst = max(worst, abs(step[v] - full[t * model.config.vocabularySize + v]))
            }
        }
        #expect(worst < 1e-3, "cached vs full logits differ by \(worst)")
    }

    @Test func scoresAreLogSoftmaxOfTheLogits() throws {
        let model = try #require(DefaultLanguageModel.model)
        let prompt = model.encode("The capital of France is")
        let target = model.encodeContinuation(" Paris, the city of light")
        let score = try model.score([
            ContinuationRequest(prompt: prompt, target: target),
            ContinuationRequest(prompt: [504], target: [3575, 282]),
        ])[0]
        let logits = try model.logits([prompt + target])[0]
        let v = model.config.vocabularySize
        for (i, token) in target.enumerated() {
            let row = logits.pointer + (prompt.count - 1 + i) * v
            let expected = row[token] - Kernels.logSumExp(row, count: v)
            #expect(abs(score.tokenLogProbs[i] - expected) < 1e-4)
            #expect(score.argmaxTokens[i] == argmax(row, count: v))
        }
        #expect(score.argmaxTokens[0] == target[0], "the model knows Paris")
    }

    @Test func emptyTargetsAreRejected() throws {
        let model = try #require(DefaultLanguageModel.model)
        #expect(throws: InferenceError.emptyTarget(request: 0)) {
            try model.score([ContinuationRequest(prompt: [504], target: [])])
        }
    }
}
