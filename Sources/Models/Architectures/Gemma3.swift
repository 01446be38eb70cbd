import Foundation
import ModelFormats
import TensorCore

// Port of transformers/models/gemma3/modeling_gemma3.py (text model) and llama.cpp's gemma3
// graph: Llama-like blocks plus per-head RMSNorm of queries and keys, RMSNorm of the attention
// and MLP outputs before the residual add, a GELU-tanh-gated MLP, embeddings scaled by √C, and
// five sliding-window blocks for every global one, the local blocks with a RoPE base of 10,000.
// llama.cpp's converter stores Gemma's `1 + w` norm weights already shifted and leaves the q/k
// rows unpermuted (rotate-half RoPE).

/// Gemma 3 checkpoints (GGUF; Hugging Face folders are not read yet).
struct Gemma3Family: ModelFamily {
    /// Values llama.cpp hard-codes for Gemma 3, which its GGUFs do not store.
    static let slidingWindowPeriod = 6
    static let localRopeBase = 10_000.0

    func config(gguf file: GGUFFile, architecture: Architecture) throws -> TransformerConfig {
        let keys = GGUFKeys(file: file, architecture: architecture.name)
        let width = try keys.dimension("embedding_length")
        let heads = try keys.dimension("attention.head_count")
        let headDim = try keys.optionalDimension("attention.key_length") ?? width / heads
        guard headDim >= 2, headDim % 2 == 0 else {
            throw ModelLoadError.invalidConfig(key: keys.key("attention.key_length"), value: "\(headDim)",
                                               expected: "an even size of at least 2", file: keys.fileName)
        }
        if let valueLength = try keys.optionalDimension("attention.value_length"), valueLength != headDim {
            throw ModelLoadError.invalidConfig(key: keys.key("attention.value_length"), value: "\(valueLength)",
                                               expected: "\(headDim) (the key length)", file: keys.fileName)
        }
        let base = keys.optionalDouble("rope.freq_base") ?? 10000
        var global = RotaryEmbedding.standard(headDim: headDim, base: base)
        switch keys.optionalString("rope.scaling.type") {
        case nil, "none"?:
            break
        case "linear"?:
            // The larger Gemma 3 models stretch the global blocks' positions.
            let factor = keys.optionalDouble("rope.scaling.factor") ?? 1
            guard factor >= 1 else {
                throw ModelLoadError.invalidConfig(key: keys.key("rope.scaling.factor"), value: "\(factor)",
                                                   expected: "at least 1", file: keys.fileName)
            }
            global = global.map { $0 / Float(factor) }
        case let other?:
            throw ModelLoadError.invalidConfig(key: keys.key("rope.scaling.type"), value: other,
                                               expected: "none or linear", file: keys.fileName)
        }
        let vocabulary = file.shape(of: "token_embd.weight")?.first ?? file.array("tokenizer.ggml.tokens")?.count
        guard let vocabulary else { throw ModelLoadError.missingConfig(key: keys.key("vocab_size"), file: keys.fileName) }
        var config = TransformerConfig(
            architecture: architecture, vocabularySize: vocabulary, hiddenSize: width,
            feedForwardSize: try keys.dimension("feed_forward_length"), layerCount: try keys.dimension("block_count"),
            headCount: heads, keyValueHeadCount: try keys.optionalDimension("attention.head_count_kv") ?? heads,
            headDim: headDim, contextLength: try keys.dimension("context_length"),
            normKind: .rms, normEpsilon: Float(try keys.double("attention.layer_norm_rms_epsilon")),
            feedForward: .gegluTanh, positions: .rotary(theta: base, inverseFrequencies: global),
            attentionBias: false, projectionBias: false, tiedEmbeddings: file.shape(of: "output.weight") == nil)
        config.embeddingScale = Float(width).squareRoot()
        config.queryKeyNorm = true
        config.outputNorms = true
        if let window = try keys.optionalDimension("attention.sliding_window") {
            config.slidingWindow = .init(size: window, period: Self.slidingWindowPeriod,
                                         inverseFrequencies: RotaryEmbedding.standard(headDim: headDim, base: Self.localRopeBase))
        }
        return config
    }

    func config(huggingFace json: HFConfig, architecture: Architecture) throws -> TransformerConfig {
        throw ModelLoadError.invalidConfig(key: "model_type", value: architecture.name,
                                           expected: "a GGUF file (Gemma 3's Hugging Face folders are not read yet)",
                                           file: json.url.path)
    }

    func weights(_ reader: inout CheckpointReader, config c: TransformerConfig, naming: CheckpointNaming) throws -> ModelWeights {
        guard naming == .gguf else {
            throw ModelLoadError.notAModel(file: reader.fileName, detail: "Gemma 3 loads from GGUF only so far")
        }
        let width = c.hiddenSize, f = c.feedForwardSize, q = c.queryWidth, kv = c.keyValueWidth, d = c.headDim
        var blocks: [BlockWeights] = []
        for i in 0..<c.layerCount {
            let part = { (p: String) in "blk.\(i).\(p).weight" }
            let qkv = Tensor(uninitialized: [c.fusedQKVRows, width])
            try reader.read(part("attn_q"), [q, width], into: qkv.pointer)
            try reader.read(part("attn_k"), [kv, width], into: qkv.pointer + q * width)
            try reader.read(part("attn_v"), [kv, width], into: qkv.pointer + (q + kv) * width)
            let gateUp = Tensor(uninitialized: [2 * f, width])
            try reader.read(part("ffn_gate"), [f, width], into: gateUp.pointer)
            try reader.read(part("ffn_up"), [f, width], into: gateUp.pointer + f * width)
            blocks.append(BlockWeights(
                attentionNorm: try reader.tensor(part("attn_norm"), [width]), qkv: qkv,
                attentionOutput: try reader.tensor(part("attn_output"), [width, q]),
                feedForwardNorm: try reader.tensor(part("ffn_norm"), [width]), feedForwardInput: gateUp,
                feedForwardDown: try reader.tensor(part("ffn_down"), [width, f]),
                queryNorm: try reader.tensor(part("attn_q_norm"), [d]), keyNorm: try reader.tensor(part("attn_k_norm"), [d]),
                postAttentionNorm: try reader.tensor(part("post_attention_norm"), [width]),
                postFeedForwardNorm: try reader.tensor(part("post_ffw_norm"), [width])))
        }
        let embedding = try reader.tensor("token_embd.weight", [c.vocabularySize, width])
        let output = c.tiedEmbeddings ? embedding : try reader.tensor("output.weight", [c.vocabularySize, width])
        return ModelWeights(tokenEmbedding: embedding, blocks: blocks,
                            outputNorm: try reader.tensor("output_norm.weight", [width]), output: output)
    }

    /// The GGUF layout; Hugging Face folders are not written (``huggingFaceConfig(_:)`` refuses
    /// first), so both namings give llama.cpp's names.
    func checkpointTensors(_ w: ModelWeights, config c: TransformerConfig, naming: CheckpointNaming) -> [CheckpointTensor] {
        let q = c.queryWidth, kv = c.keyValueWidth, f = c.feedForwardSize
        var tensors: [CheckpointTensor] = [.rows("token_embd.weight", w.tokenEmbedding)]
        for (i, b) in w.blocks.enumerated() {
            let name = { (part: String) in "blk.\(i).\(part).weight" }
            tensors += [
                .rows(name("attn_norm"), b.attentionNorm),
                .rows(name("attn_q"), b.qkv, 0..<q), .rows(name("attn_k"), b.qkv, q..<(q + kv)),
                .rows(name("attn_v"), b.qkv, (q + kv)..<(q + 2 * kv)),
            ]
            if let queryNorm = b.queryNorm { tensors.append(.rows(name("attn_q_norm"), queryNorm)) }
            if let keyNorm = b.keyNorm { tensors.append(.rows(name("attn_k_norm"), keyNorm)) }
            tensors.append(.rows(name("attn_output"), b.attentionOutput))
            if let norm = b.postAttentionNorm { tensors.append(.rows(name("post_attention_norm"), norm)) }
            tensors += [
                .rows(name("ffn_norm"), b.feedForwardNorm),
                .rows(name("ffn_gate"), b.feedForwardInput, 0..<f), .rows(name("ffn_up"), b.feedForwardInput, f..<(2 * f)),
                .rows(name("ffn_down"), b.feedForwardDown),
            ]
            if let norm = b.postFeedForwardNorm { tensors.append(.rows(name("post_ffw_norm"), norm)) }
        }
        tensors.append(.rows("output_norm.weight", w.outputNorm))
        if !c.tiedEmbeddings { tensors.append(.rows("output.weight", w.output)) }
        return tensors
    }

    func huggingFaceConfig(_ config: TransformerConfig) throws -> [(key: String, value: JSONValue)] {
        throw ArchitectureError.notExpressible("Gemma 3 exports as GGUF only so far")
    }
}
