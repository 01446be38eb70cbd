import Foundation
import TensorCore
import Testing

@testable import Models

/// Tiny random-weight checkpoints written by Scripts/golden/make_tiny_models.py, with the
/// logits PyTorch computed for them.
struct TinyReference: Decodable {
    struct Sequence: Decodable {
        /// nil for sequences given as raw ids.
        let text: String?
        let input_ids: [Int]
        let logits: [[Float]]
        let greedy_ids: [Int]
    }
    let sequences: [Sequence]

    static func folder(_ name: String) -> URL {
        Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures")!
    }

    static func load(_ name: String) throws -> TinyReference {
        try JSONDecoder().decode(TinyReference.self, from: Data(contentsOf: folder(name).appendingPathComponent("reference.json")))
    }
}

@Suite struct TinyModelTests {
    @Test(arguments: ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma3"])
    func logitsMatchPyTorch(model name: String) throws {
        let model = try ModelLoader.transformer(huggingFace: TinyReference.folder(name))
        let reference = try TinyReference.load(name)
        // All sequences in one ragged batch.
        let logits = try model.forward(reference.sequences.map(\.input_ids), logits: .all)
        var row = 0
        var worst: Float = 0
        for sequence in reference.sequences {
            for expected in sequence.logits {
                let actual = logits.pointer + row * model.config.vocabularySize
                for (i, e) in expected.enumerated() { worst = max(worst, abs(actual[i] - e) / max(1, abs(e))) }
                row += 1
            }
        }
        #expect(worst <= 1e-4, "\(name): worst scaled logit difference \(worst)")
    }

    @Test(arguments: ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma3"])
    func cachedDecodingMatchesGreedyReference(model name: String) throws {
        let model = try ModelLoader.transformer(huggingFace: TinyReference.folder(name))
        for sequence in try TinyReference.load(name).sequences {
            let cache = KVCache(config: model.config)
            var logits = try model.forward([sequence.input_ids], caches: [cache], logits: .last)
            var generated: [Int] = []
            for _ in sequence.greedy_ids {
                var best = 0
                for i in 0..<model.config.vocabularySize where logits[i] > logits[best] { best = i }
                generated.append(best)
                logits = try model.forward([[best]], caches: [cache], logits: .last)
            }
            #expect(generated == sequence.greedy_ids, "\(name)")
        }
    }
}
