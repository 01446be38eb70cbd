import Foundation
import ModelFormats
import TensorCore

// Port of transformers/models/gemma3/modeling_gemma3.py (text model) and llama.cpp's gemma3
// graph: Llama-like blocks plus per-head RMSNorm of queries and keys, RMSNorm of the attention
// and MLP outputs before the residual add, a GELU-tanh-gated MLP, embeddings scaled by √C, and
// five sliding-window blocks for every global one, the local blocks with a RoPE base of 10,000.
// Gemma's norms scale by `1 + w`: llama.cpp's converter stores the shifted weights, transformers
// the raw `w`, so the canonical weights are the shifted ones and a Hugging Face folder is
// shifted at load and back at export. GGUF q/k rows are unpermuted (rotate-half RoPE).

/// Gemma 3 text checkpoints (GGUF `gemma3`, `config.json` `gemma3_text`).
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
            throw ModelLoadError.invalidConfig(
                key: keys.key("attention.key_length"), value: "\(headDim)",
                expected: "an even size of at least 2", file: keys.fileName)
        }
        if let valueLength = try keys.optionalDimension("attention.value_length"), valueLength != headDim {
            throw ModelLoadError.invalidConfig(
                key: keys.key("attention.value_length"), value: "\(valueLength)",
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
                throw ModelLoadError.invalidConfig(
                    key: keys.key("rope.scaling.factor"), value: "\(factor)",
                    expected: "at least 1", file: keys.fileName)
            }
            global = global.map { $0 / Float(factor) }
        case let other?:
            throw ModelLoadError.invalidConfig(
                key: keys.key("rope.scaling.type"), value: other,
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
            let layers = config.layerCount
            config.slidingWindow = .init(
                size: window,
                localLayers: (0..<layers).filter { $0 % Self.slidingWindowPeriod != Self.slidingWindowPeriod - 1 },
                inverseFrequencies: RotaryEmbedding.standard(headDim: headDim, base: Self.localRopeBase))
        }
        return config
    }

    /// Configuration from transformers' `Gemma3TextConfig`.
    func config(huggingFace json: HFConfig, architecture: Architecture) throws -> TransformerConfig {
        let file = json.url.path  // the full path, as HFConfigError gives: "config.json" alone names no model
        let width = try json.size("hidden_size")
        let heads = try json.size("num_attention_heads")
        let headDim = try json.size("head_dim", default: 256)
        let layers = try json.size("num_hidden_layers")
        func refuse(_ key: String, _ value: String, _ expected: String) -> ModelLoadError {
            .invalidConfig(key: key, value: value, expected: expected, file: file)
        }
        let activation = try json.string("hidden_activation", default: "gelu_pytorch_tanh")
        guard activation == "gelu_pytorch_tanh" else { throw refuse("hidden_activation", activation, "gelu_pytorch_tanh") }
        // The attention scale IBKE uses is 1/√head_dim.
        let scalar = try json.int("query_pre_attn_scalar", default: headDim)
        guard scalar == headDim else { throw refuse("query_pre_attn_scalar", "\(scalar)", "\(headDim) (head_dim)") }
        for key in ["attn_logit_softcapping", "final_logit_softcapping"] where json.contains(key) {
            throw refuse(key, "a number", "null (soft-capping is not supported)")
        }
        if try json.bool("attention_bias", default: false) { throw refuse("attention_bias", "true", "false") }
        if try json.bool("use_bidirectional_attention", default: false) { throw refuse("use_bidirectional_attention", "true", "false") }
        let contextLength = try json.size("max_position_embeddings")
        let types =
            try json.stringsIfPresent("layer_types")
            ?? (0..<layers).map { $0 % Self.slidingWindowPeriod == Self.slidingWindowPeriod - 1 ? "full_attention" : "sliding_attention" }
        guard types.count == layers, types.allSatisfy({ $0 == "full_attention" || $0 == "sliding_attention" }) else {
            throw refuse("layer_types", types.joined(separator: ","), "\(layers) of full_attention and sliding_attention")
        }
        // transformers ≥ 5: rope_parameters per layer type; earlier files: rope_theta and rope_local_base_freq.
        let parameters = try json.objectIfPresent("rope_parameters")
        func rotary(_ type: String, fallbackBase: Double) throws -> [Float] {
            guard let p = try parameters?.objectIfPresent(type) else {
                return RotaryEmbedding.standard(headDim: headDim, base: fallbackBase)
            }
            let kind = try p.string("rope_type", default: "default")
            guard kind == "default" || kind == "linear" else { throw refuse("rope_type", kind, "default or linear") }
            let frequencies = RotaryEmbedding.standard(headDim: headDim, base: try p.double("rope_theta", default: fallbackBase))
            let factor = kind == "linear" ? try p.double("factor") : 1
            return frequencies.map { $0 / Float(factor) }
        }
        let globalBase = try json.double("rope_theta", default: 1_000_000)
        let global = try rotary("full_attention", fallbackBase: globalBase)
        var config = TransformerConfig(
            architecture: architecture, vocabularySize: try json.size("vocab_size"), hiddenSize: width,
            feedForwardSize: try json.size("intermediate_size"), layerCount: layers,
            headCount: heads, keyValueHeadCount: try json.size("num_key_value_heads", default: heads),
            headDim: headDim, contextLength: contextLength,
            normKind: .rms, normEpsilon: Float(try json.double("rms_norm_eps", default: 1e-6)),
            feedForward: .gegluTanh, positions: .rotary(theta: globalBase, inverseFrequencies: global),
            attentionBias: false, projectionBias: false, tiedEmbeddings: try json.bool("tie_word_embeddings", default: true))
        config.embeddingScale = Float(width).squareRoot()
        config.queryKeyNorm = true
        config.outputNorms = true
        let local = types.indices.filter { types[$0] == "sliding_attention" }
        if !local.isEmpty {
            config.slidingWindow = .init(
                size: try json.size("sliding_window"), localLayers: local,
                inverseFrequencies: try rotary(
                    "sliding_attention", fallbackBase: try json.double("rope_local_base_freq", default: Self.localRopeBase)))
        }
        return config
    }

    func weights(_ reader: inout CheckpointReader, config c: TransformerConfig, naming: CheckpointNaming) throws -> ModelWeights {
        let names = TensorNames(naming)
        let width = c.hiddenSize
        let f = c.feedForwardSize
        let q = c.queryWidth
        let kv = c.keyValueWidth
        let d = c.headDim
        /// A norm weight in canonical (`1 + w`) form.
        func norm(_ name: String, _ size: Int) throws -> Tensor {
            let t = try reader.tensor(name, [size])
            if names.rawNorms { for i in 0..<size { t.pointer[i] += 1 } }
            return t
        }
        var blocks: [BlockWeights] = []
        for i in 0..<c.layerCount {
            let part = { (p: String) in names.block(i, p) }
            let qkv = try reader.matrix(
                [
                    .init(name: part("attn_q"), rows: q), .init(name: part("attn_k"), rows: kv),
                    .init(name: part("attn_v"), rows: kv),
                ], columns: width)
            let gateUp = try reader.matrix(
                [.init(name: part("ffn_gate"), rows: f), .init(name: part("ffn_up"), rows: f)],
                columns: width)
            blocks.append(
                BlockWeights(
                    attentionNorm: try norm(part("attn_norm"), width), qkv: qkv,
                    attentionOutput: try reader.matrix(part("attn_output"), [width, q]),
                    feedForwardNorm: try norm(part("ffn_norm"), width), feedForwardInput: gateUp,
                    feedForwardDown: try reader.matrix(part("ffn_down"), [width, f]),
                    queryNorm: try norm(part("attn_q_norm"), d), keyNorm: try norm(part("attn_k_norm"), d),
                    postAttentionNorm: try norm(part("post_attention_norm"), width),
                    postFeedForwardNorm: try norm(part("post_ffw_norm"), width)))
        }
        let embedding = try reader.matrix(names.embedding, [c.vocabularySize, width])
        var output = embedding
        if reader.has(names.output) {
            if c.tiedEmbeddings {
                reader.consume(names.output)
            } else {
                output = try reader.matrix(names.output, [c.vocabularySize, width])
            }
        } else if !c.tiedEmbeddings {
            throw ModelLoadError.missingTensor(names.output, file: reader.fileName)
        }
        return ModelWeights(tokenEmbedding: embedding, blocks: blocks, outputNorm: try norm(names.outputNorm, width), output: output)
    }

    /// Gemma 3's tensor names in one format, and whether its norm weights are the raw `w`.
    struct TensorNames {
        var embedding: String, outputNorm: String, output: String
        var block: (Int, String) -> String
        var rawNorms: Bool

        init(_ naming: CheckpointNaming) {
            switch naming {
            case .gguf:
                (embedding, outputNorm, output, rawNorms) = ("token_embd.weight", "output_norm.weight", "output.weight", false)
                block = { i, part in "blk.\(i).\(part).weight" }
            case .huggingFace:
                (embedding, outputNorm, output, rawNorms) = ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", true)
                block = { i, part in
                    let module =
                        [
                            "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
                            "attn_k_norm": "self_attn.k_norm", "post_attention_norm": "post_attention_layernorm",
                            "ffn_norm": "pre_feedforward_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                            "ffn_down": "mlp.down_proj", "post_ffw_norm": "post_feedforward_layernorm",
                        ][part] ?? part
                    return "model.layers.\(i).\(module).weight"
                }
            }
        }
    }

    func checkpointTensors(_ w: ModelWeights, config c: TransformerConfig, naming: CheckpointNaming) -> [CheckpointTensor] {
        let names = TensorNames(naming)
        let q = c.queryWidth
        let kv = c.keyValueWidth
        let f = c.feedForwardSize
        func norm(_ name: String, _ t: Tensor?) -> [CheckpointTensor] {
            guard let t else { return [] }
            guard names.rawNorms else { return [.rows(name, t)] }
            return [CheckpointTensor(name: name, shape: t.shape, values: { t.scalars.map { $0 - 1 } })]
        }
        var tensors: [CheckpointTensor] = [.rows(names.embedding, w.tokenEmbedding)]
        for (i, b) in w.blocks.enumerated() {
            let name = { (part: String) in names.block(i, part) }
            tensors += norm(name("attn_norm"), b.attentionNorm)
            tensors += [
                .rows(name("attn_q"), b.qkv, 0..<q), .rows(name("attn_k"), b.qkv, q..<(q + kv)),
                .rows(name("attn_v"), b.qkv, (q + kv)..<(q + 2 * kv)),
            ]
            tensors += norm(name("attn_q_norm"), b.queryNorm) + norm(name("attn_k_norm"), b.keyNorm)
            tensors.append(.rows(name("attn_output"), b.attentionOutput))
            tensors += norm(name("post_attention_norm"), b.postAttentionNorm) + norm(name("ffn_norm"), b.feedForwardNorm)
            tensors += [
                .rows(name("ffn_gate"), b.feedForwardInput, 0..<f), .rows(name("ffn_up"), b.feedForwardInput, f..<(2 * f)),
                .rows(name("ffn_down"), b.feedForwardDown),
            ]
            tensors += norm(name("post_ffw_norm"), b.postFeedForwardNorm)
        }
        tensors += norm(names.outputNorm, w.outputNorm)
        if !c.tiedEmbeddings { tensors.append(.rows(names.output, w.output)) }
        return tensors
    }

    /// The keys transformers' `Gemma3TextConfig` reads.
    func huggingFaceConfig(_ c: TransformerConfig) throws -> [(key: String, value: JSONValue)] {
        guard case .rotary(let theta, let global) = c.positions else {
            throw ArchitectureError.notExpressible("a gemma3 model without rotary positions")
        }
        let standard = RotaryEmbedding.standard(headDim: c.headDim, base: theta)
        guard global == standard else {
            throw ArchitectureError.notExpressible("RoPE scaling of the global blocks, which the exporter does not write yet")
        }
        func parameters(_ base: Double) -> JSONValue { .object(["rope_type": .string("default"), "rope_theta": .double(base)]) }
        var rope: JSONObject = ["full_attention": parameters(theta)]
        var entries: [(key: String, value: JSONValue)] = [
            ("hidden_size", .int(c.hiddenSize)), ("intermediate_size", .int(c.feedForwardSize)),
            ("num_hidden_layers", .int(c.layerCount)), ("num_attention_heads", .int(c.headCount)),
            ("num_key_value_heads", .int(c.keyValueHeadCount)), ("head_dim", .int(c.headDim)),
            ("query_pre_attn_scalar", .int(c.headDim)), ("max_position_embeddings", .int(c.contextLength)),
            ("rms_norm_eps", .decimal(c.normEpsilon)), ("hidden_activation", .string("gelu_pytorch_tanh")),
            ("attention_bias", .bool(false)), ("attn_logit_softcapping", .null), ("final_logit_softcapping", .null),
        ]
        if let window = c.slidingWindow {
            guard let base = Self.base(of: window.inverseFrequencies, headDim: c.headDim) else {
                throw ArchitectureError.notExpressible("local RoPE frequencies that no base gives")
            }
            rope.updateValue(parameters(base), forKey: "sliding_attention")
            entries.append(("sliding_window", .int(window.size)))
        }
        entries.append(
            (
                "layer_types",
                .array(
                    (0..<c.layerCount).map {
                        .string(c.window(layer: $0) == nil ? "full_attention" : "sliding_attention")
                    })
            ))
        entries.append(("rope_parameters", .object(rope)))
        entries.append(("tie_word_embeddings", .bool(c.tiedEmbeddings)))
        return entries
    }

    /// The RoPE base whose standard frequencies are `frequencies` (its second one is `base^(−2/D)`).
    static func base(of frequencies: [Float], headDim: Int) -> Double? {
        guard frequencies.count >= 2, frequencies[1] > 0 else { return nil }
        let base = pow(Double(frequencies[1]), -Double(headDim) / 2)
        return [base.rounded(), base].first { RotaryEmbedding.standard(headDim: headDim, base: $0) == frequencies }
    }
}
