import Foundation
import Testing
import TensorCore
@testable import Models

/// Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, `qwen2`: q/k/v biases, an untied head, unpermuted q/k
/// rows in GGUF) against transformers on the same GGUF (`Scripts/golden/make_model_reference.py`).
/// Runs when the model has been fetched (`ibke model fetch qwen2.5-coder-0.5b`, as CI does).
@Suite(.enabled(if: CachedModel.qwenCoder.isAvailable, "qwen2.5-coder-0.5b not fetched (ibke model fetch qwen2.5-coder-0.5b)"))
struct QwenCoderTests {
    static let model: LanguageModel? = try? LanguageModel.load(CachedModel.qwenCoder.path)

    @Test func loadsAsQwen2WithAnUntiedHead() throws {
        let model = try #require(Self.model)
        let c = model.config
        #expect(c.architecture.name == "qwen2")
        #expect((c.layerCount, c.hiddenSize, c.headCount, c.keyValueHeadCount) == (24, 896, 14, 2))
        #expect(c.attentionBias && !c.tiedEmbeddings)
    }

    @Test func tokenizerAndLogitsMatchPyTorch() throws {
        let model = try #require(Self.model)
        let reference = try ReferenceLogits.load(CachedModel.qwenCoder.reference)
        var worst: Float = 0
        for prompt in reference.prompts {
            #expect(model.encode(prompt.text) == prompt.token_ids, "\(prompt.text)")
            let logits = try model.transformer.forward([prompt.token_ids], logits: .all)
            for (row, position) in prompt.positions.enumerated() {
                let values = logits.pointer + row * model.config.vocabularySize
                for (id, expected) in zip(position.top5_ids, position.top5_logits) {
                    worst = max(worst, abs(values[id] - expected))
                }
                worst = max(worst, abs(Kernels.logSumExp(values, count: model.config.vocabularySize) - position.logsumexp))
            }
        }
        #expect(worst < 1e-3, "largest logit difference \(worst)")
        print("qwen2.5-coder-0.5b: largest logit difference vs PyTorch:", worst)
    }

    @Test func greedyGenerationReproducesReferenceContinuations() throws {
        let model = try #require(Self.model)
        for prompt in try ReferenceLogits.load(CachedModel.qwenCoder.reference).prompts {
            let options = GenerationOptions(maxTokens: 10, stopTokens: model.tokenizer.stopTokenIDs)
            let ids = try model.generate(prompt: prompt.token_ids, options: options)
            #expect(ids == prompt.greedy_continuation_ids, "\(prompt.text)")
            #expect(model.tokenizer.decode(ids, skipSpecialTokens: false) == prompt.greedy_continuation_text)
        }
    }
}
