import Foundation
import TensorCore
import Testing

@testable import Models

/// Every cached catalogue model computed on its GGUF blocks gives the float32 path's logits
/// (up to summation order) and the same greedy tokens, from a whole prompt and token by token.
@Suite(.serialized) struct NativePrecisionTests {
    static var models: [CachedModel] { [CachedModel.smolLM2].filter(\.isAvailable) + CachedModel.fetched }

    @Test(arguments: models)
    func nativeLogitsMatchFloat32(_ cached: CachedModel) throws {
        let exact = try cached.load()
        let native = try LanguageModel.load(cached.path, precision: .native)
        let matrices = native.transformer.weights.blocks.flatMap { [$0.qkv, $0.attentionOutput, $0.feedForwardInput, $0.feedForwardDown] }
        #expect(matrices.allSatisfy { $0.isQuantized }, "every block matrix stays in its blocks")
        let tokens = exact.encode("The Eiffel Tower is located in the city of Paris, which is also the capital of France.")
        let v = exact.config.vocabularySize
        let reference = try exact.transformer.forward([tokens])
        let whole = try native.transformer.forward([tokens])
        let cache = KVCache(config: native.config)
        var worst: Float = 0
        var scale: Float = 0
        for (t, token) in tokens.enumerated() {
            let step = try native.transformer.forward([[token]], caches: [cache], logits: .last)
            for i in 0..<v {
                let r = reference.pointer[t * v + i]
                worst = max(worst, abs(whole.pointer[t * v + i] - r), abs(step.pointer[i] - r))
                scale = max(scale, abs(r))
            }
            #expect(argmax(step.pointer, count: v) == argmax(reference.pointer + t * v, count: v), "position \(t)")
        }
        #expect(worst <= 1e-4 * scale + 2e-3, "\(cached.file.rawValue): logits differ by \(worst) (largest \(scale))")
    }
}
