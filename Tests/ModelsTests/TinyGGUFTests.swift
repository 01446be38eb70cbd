import Foundation
import TensorCore
import Testing

@testable import Models

/// tiny-llama converted to GGUF by Scripts/golden/make_tiny_gguf.py: F32, F16 and Q8_0 tensors,
/// q/k rows permuted as llama.cpp's converter does, Llama-3 RoPE scaling as `rope_freqs.weight`,
/// a `gpt2` tokenizer (`llama-bpe`). Its reference logits come from PyTorch with the weights
/// replaced by exactly the values the GGUF stores.
@Suite struct TinyGGUFTests {
    static var url: URL { Bundle.module.url(forResource: "tiny-llama", withExtension: "gguf", subdirectory: "Fixtures")! }

    static func reference() throws -> TinyReference {
        let url = Bundle.module.url(forResource: "tiny-llama-gguf-reference", withExtension: "json", subdirectory: "Fixtures")!
        return try JSONDecoder().decode(TinyReference.self, from: Data(contentsOf: url))
    }

    @Test("tiny-llama.gguf loads with its tokenizer and the configuration of the safetensors original")
    func loadsLikeTheOriginal() throws {
        let model = try LanguageModel.load(Self.url)
        let original = try ModelLoader.transformer(huggingFace: TinyReference.folder("tiny-llama")).config
        #expect(model.format == .gguf)
        var config = model.config
        guard case .rotary(_, let frequencies) = config.positions, case .rotary(_, let expected) = original.positions else {
            Issue.record("no RoPE in \(config.positions) or \(original.positions)")
            return
        }
        // rope_freqs divisors (GGUF) and the llama3 formula (config.json) round differently.
        for (f, e) in zip(frequencies, expected) { #expect(abs(f - e) <= 1e-6 * e, "\(frequencies) vs \(expected)") }
        config.positions = original.positions
        #expect(config == original)
        #expect(model.tokenizer.vocabularySize == 300)
        #expect(model.tokenizer.bosTokenID == 0 && model.tokenizer.eosTokenID == 1)
    }

    @Test("tiny-llama.gguf's logits match PyTorch on its F32/F16/Q8_0 weights")
    func logitsMatchPyTorch() throws {
        let model = try LanguageModel.load(Self.url)
        let reference = try Self.reference()
        let logits = try model.logits(reference.sequences.map(\.input_ids))
        let v = model.config.vocabularySize
        var worst: Float = 0
        for (sequence, actual) in zip(reference.sequences, logits) {
            for (position, expected) in sequence.logits.enumerated() {
                let row = actual.pointer + position * v
                for (i, e) in expected.enumerated() { worst = max(worst, abs(row[i] - e) / max(1, abs(e))) }
                let top5 = topK(row, count: v, k: 5)
                let expectedTop5 = expected.indices.sorted { expected[$0] > expected[$1] }.prefix(5)
                #expect(top5 == Array(expectedTop5), "top-5 ids at position \(position) of \(sequence.input_ids)")
            }
        }
        #expect(worst <= 1e-4, "worst scaled logit difference \(worst)")
    }

    @Test("tiny-llama.gguf's tokenizer (gpt2 metadata, llama-bpe) encodes like tokenizer.json")
    func tokenizerMatchesTokenizerJSON() throws {
        let model = try LanguageModel.load(Self.url)
        let original = try LanguageModel.load(TinyReference.folder("tiny-llama"))
        for sequence in try Self.reference().sequences {
            guard let text = sequence.text else { continue }
            #expect(model.encode(text) == sequence.input_ids, "\(text)")
        }
        for text in [
            "The capital of Italy is Rome.", "Numbers like 12345 and 2024", "She said: \"It's\"\n\n  x",
            "<|begin_of_text|>Hello<|end_of_text|>", "ünïcödé 🚀",
        ] {
            #expect(model.encode(text) == original.encode(text), "\(text.debugDescription)")
            let ids = original.encode(text)
            #expect(model.tokenizer.decode(ids, skipSpecialTokens: false) == original.tokenizer.decode(ids, skipSpecialTokens: false))
        }
    }

    @Test("greedy generation from tiny-llama.gguf with the KV cache gives PyTorch's greedy tokens")
    func greedyGeneration() throws {
        let model = try LanguageModel.load(Self.url)
        for sequence in try Self.reference().sequences {
            let generated = try model.generate(prompt: sequence.input_ids, options: GenerationOptions(maxTokens: sequence.greedy_ids.count))
            #expect(generated == sequence.greedy_ids, "\(sequence.input_ids)")
        }
    }
}
