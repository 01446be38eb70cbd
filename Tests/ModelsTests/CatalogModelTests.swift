import Foundation
import TensorCore
import Testing

@testable import Models

/// The catalogue's checkpoints beyond the default model against transformers on the same GGUF
/// (`Scripts/golden/make_model_reference.py`), when they have been fetched
/// (`ibke model fetch qwen2.5-coder-0.5b`, `ibke model fetch gemma3-270m`, as CI does).
@Suite struct CatalogModelTests {
    @Test(arguments: CachedModel.fetched)
    func tokenizerAndLogitsMatchPyTorch(_ checkpoint: CachedModel) throws {
        let model = try checkpoint.load()
        let reference = try ReferenceLogits.load(checkpoint.reference)
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
        #expect(worst < 1e-3, "\(checkpoint.file.rawValue): largest logit difference \(worst)")
        print("\(checkpoint.file.rawValue): largest logit difference vs PyTorch:", worst)
    }

    @Test(arguments: CachedModel.fetched)
    func greedyGenerationReproducesReferenceContinuations(_ checkpoint: CachedModel) throws {
        let model = try checkpoint.load()
        for prompt in try ReferenceLogits.load(checkpoint.reference).prompts {
            let options = GenerationOptions(maxTokens: 10, stopTokens: model.tokenizer.stopTokenIDs)
            let ids = try model.generate(prompt: prompt.token_ids, options: options)
            #expect(ids == prompt.greedy_continuation_ids, "\(prompt.text)")
            #expect(model.tokenizer.decode(ids, skipSpecialTokens: false) == prompt.greedy_continuation_text)
        }
    }

    /// Qwen2.5-Coder: `qwen2` with q/k/v biases, an untied head and unpermuted q/k rows in GGUF.
    @Test(.enabled(if: CachedModel.qwenCoder.isAvailable, "qwen2.5-coder-0.5b not fetched"))
    func qwenLoadsAsQwen2WithAnUntiedHead() throws {
        let c = try CachedModel.qwenCoder.load().config
        #expect(c.architecture.name == "qwen2")
        #expect((c.layerCount, c.hiddenSize, c.headCount, c.keyValueHeadCount) == (24, 896, 14, 2))
        #expect(c.attentionBias && !c.tiedEmbeddings)
    }

    /// Gemma 3: five sliding-window blocks of 512 for every global one.
    @Test(.enabled(if: CachedModel.gemma3.isAvailable, "gemma3-270m not fetched"))
    func gemmaInterleavesSlidingWindows() throws {
        let c = try CachedModel.gemma3.load().config
        #expect(c.architecture.name == "gemma3" && c.feedForward == .gegluTanh && c.queryKeyNorm && c.outputNorms)
        #expect((0..<c.layerCount).filter { c.window(layer: $0) == nil } == [5, 11, 17])
        #expect(c.window(layer: 0) == 512)
    }
}

/// Sliding-window attention on the tiny Llama (two blocks, both local with a window of 3): a
/// position sees at most the 4 positions before it, so its logits are those of that suffix run
/// alone (RoPE is relative), and cached decoding gives the full pass's logits.
@Suite struct SlidingWindowTests {
    @Test func aPositionSeesOnlyItsWindow() throws {
        let plain = try ModelLoader.transformer(huggingFace: TinyReference.folder("tiny-llama"))
        var config = plain.config
        guard case .rotary(_, let frequencies) = config.positions else {
            Issue.record("tiny-llama has RoPE")
            return
        }
        config.slidingWindow = .init(size: 3, localLayers: [0, 1], inverseFrequencies: frequencies)
        let model = Transformer(config: config, weights: plain.weights)
        let tokens = [5, 17, 42, 9, 88, 120, 3, 61, 7, 250, 19, 33]
        let v = config.vocabularySize
        let full = try model.forward([tokens], logits: .all)
        let unwindowed = try plain.forward([tokens], logits: .all)
        var worst: Float = 0
        var windowMatters: Float = 0
        for t in 4..<tokens.count {
            let suffix = try model.forward([Array(tokens[(t - 4)...t])], logits: .last)
            for i in 0..<v {
                worst = max(worst, abs(suffix[i] - full[t * v + i]))
                windowMatters = max(windowMatters, abs(unwindowed[t * v + i] - full[t * v + i]))
            }
        }
        #expect(worst < 1e-4, "a position's logits differ from its window's alone by \(worst)")
        #expect(windowMatters > 1e-2, "the window changed nothing")

        let cache = KVCache(config: config)
        _ = try model.forward([Array(tokens[..<2])], caches: [cache], logits: .none)
        var cached: Float = 0
        for t in 2..<tokens.count {
            let step = try model.forward([[tokens[t]]], caches: [cache], logits: .last)
            for i in 0..<v { cached = max(cached, abs(step[i] - full[t * v + i])) }
        }
        #expect(cached < 1e-4, "cached decoding differs from the full pass by \(cached)")
    }
}
