import Foundation
import ModelFormats
import TestSupport
import Testing

/// The default model, when fetched.
private let smolLM2URL = IBKEHome.model(.smolLM2)
private let smolLM2Available = IBKEHome.isFetched(.smolLM2)

/// `weight_samples` from shared/reference/smollm2-135m-instruct-q4_1/logits.json.
private struct WeightSamples: Decodable {
    struct Sample: Decodable {
        let ggufType: String
        let ggufShapeNe: [Int]
        let numpyShape: [Int]
        let row0First8: [Double]
        let sum: Double
        let sumSq: Double
    }
    let weightSamples: [String: Sample]
}

/// The value as the reference wrote it: Python's `round(float(x), 7)`, which like `%.7f` rounds
/// the exact binary value correctly to 7 decimals.
private func sevenDecimals(_ x: Double) -> String { String(format: "%.7f", x) }

@Suite(
    "SmolLM2-135M-Instruct Q4_1 (default model)",
    .enabled(if: smolLM2Available, "model file not present"))
struct SmolLM2GGUFTests {
    @Test("architecture metadata and tensor table")
    func metadata() throws {
        let file = try GGUFFile(url: smolLM2URL)
        #expect(file.version == 3)
        #expect(file.architecture == "llama")
        #expect(file.int("llama.block_count") == 30)
        #expect(file.int("llama.embedding_length") == 576)
        #expect(file.int("llama.feed_forward_length") == 1536)
        #expect(file.int("llama.attention.head_count") == 9)
        #expect(file.int("llama.attention.head_count_kv") == 3)
        #expect(file.int("llama.context_length") == 8192)
        #expect(file.int("llama.vocab_size") == 49152)
        #expect(file.double("llama.rope.freq_base") == 100_000)
        #expect(file.metadata["llama.attention.layer_norm_rms_epsilon"] == .float32(1e-5))
        #expect(file.string("tokenizer.ggml.model") == "gpt2")
        #expect(file.bool("tokenizer.ggml.add_bos_token") == false)
        #expect(file.strings("tokenizer.ggml.tokens")?.count == 49152)
        #expect(file.ints("tokenizer.ggml.token_type")?.count == 49152)
        #expect(file.array("tokenizer.ggml.merges")?.count == 48900)
        #expect(file.metadataKeys.count == 33)
        #expect(file.metadataKeys.first == "general.architecture")

        #expect(file.tensorNames.count == 272)
        #expect(file.tensorInfo("output.weight") == nil)  // tied embeddings
        #expect(file.shape(of: "token_embd.weight") == [49152, 576])
        #expect(file.shape(of: "blk.0.ffn_down.weight") == [576, 1536])
        let types = Dictionary(grouping: file.tensorInfos, by: \.type).mapValues(\.count)
        #expect(types == [.q8_0: 1, .q4_1: 210, .f32: 61])
    }

    @Test("dequantized weights match the reference samples")
    func weightSamples() throws {
        let file = try GGUFFile(url: smolLM2URL)
        let url = try Fixtures.url("smollm2_weight_samples", "json")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let samples = try decoder.decode(WeightSamples.self, from: Data(contentsOf: url))
            .weightSamples
        #expect(samples.count == 6)
        for (name, sample) in samples.sorted(by: { $0.key < $1.key }) {
            let info = try #require(file.tensorInfo(name), "\(name)")
            #expect(info.type.name == sample.ggufType, "\(name)")
            #expect(info.dimensions == sample.ggufShapeNe, "\(name)")
            #expect(info.shape == sample.numpyShape, "\(name)")
            let values = try file.readFloats(name)

            // First 8 of row 0: exact for F32/Q8_0, within 1 ulp for Q4_1 (fused or not).
            let tolerateUlp = info.type == .q4_1
            for (i, reference) in sample.row0First8.enumerated() {
                let x = values[i]
                let candidates = tolerateUlp ? [x.nextDown, x, x.nextUp] : [x]
                let matches = candidates.contains {
                    sevenDecimals(Double($0)) == sevenDecimals(reference)
                }
                #expect(matches, "\(name)[0, \(i)] = \(x), reference \(reference)")
            }

            var sum = 0.0
            var sumSquares = 0.0
            for v in values {
                let d = Double(v)
                sum += d
                sumSquares += d * d
            }
            #expect(
                abs(sum - sample.sum) <= 1e-6 * abs(sample.sum),
                "\(name) sum \(sum) vs \(sample.sum)")
            #expect(
                abs(sumSquares - sample.sumSq) <= 1e-6 * abs(sample.sumSq),
                "\(name) sum of squares \(sumSquares) vs \(sample.sumSq)")
        }
    }
}
