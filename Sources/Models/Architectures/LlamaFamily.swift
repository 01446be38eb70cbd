import Foundation
import ModelFormats
import TensorCore

// Port of transformers/models/llama/modeling_llama.py and qwen2/modeling_qwen2.py (5.24.0):
// pre-norm blocks with RMSNorm, RoPE (rotate_half pairing), grouped-query attention and a
// SwiGLU MLP; Qwen2 adds q/k/v biases. Mistral checkpoints are Llama checkpoints.

/// Checkpoint tensor names of a Llama-family model, in one naming scheme.
struct LlamaTensorNames: Sendable {
    var embedding: String
    var outputNorm: String
    var output: String
    /// Name of a per-block tensor; `part` is the GGUF-style part name (`attn_q`, `ffn_down`, …).
    var block: @Sendable (Int, String) -> String
    var weightSuffix = ".weight"
    var biasSuffix = ".bias"

    static let gguf = LlamaTensorNames(
        embedding: "token_embd.weight", outputNorm: "output_norm.weight", output: "output.weight",
        block: { i, part in "blk.\(i).\(part)" })

    static let huggingFace = LlamaTensorNames(
        embedding: "model.embed_tokens.weight", outputNorm: "model.norm.weight", output: "lm_head.weight",
        block: { i, part in
            let hf =
                [
                    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
                    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
                ][part] ?? part
            return "model.layers.\(i).\(hf)"
        })
}

/// Llama, Mistral and Qwen2 checkpoints; the members differ only in the values below.
struct LlamaFamily: ModelFamily {
    /// llama.cpp's converter permuted the q/k rows of GGUFs of this architecture: it does for
    /// `llama` (Mistral included), not for `qwen2`.
    var ggufPermutesQK: Bool
    /// q/k/v always carry biases and `config.json` has no `attention_bias` key (Qwen2).
    var alwaysAttentionBias: Bool
    /// `tie_word_embeddings` when `config.json` does not say.
    var tiedByDefault: Bool
    /// Whether `sliding_window` applies when `use_sliding_window` is absent (Mistral's does,
    /// Qwen2's default is off).
    var slidingWindowByDefault: Bool

    static let llama = LlamaFamily(ggufPermutesQK: true, alwaysAttentionBias: false, tiedByDefault: false, slidingWindowByDefault: true)
    static let qwen2 = LlamaFamily(ggufPermutesQK: false, alwaysAttentionBias: true, tiedByDefault: true, slidingWindowByDefault: false)

    /// Reads the weights of a Llama/Qwen2/Mistral checkpoint into canonical form, undoing
    /// llama.cpp's q/k row permutation where the GGUF has it (it reorders each head's rows for
    /// adjacent-pair RoPE).
    func weights(_ reader: inout CheckpointReader, config c: TransformerConfig, naming: CheckpointNaming) throws -> ModelWeights {
        let names: LlamaTensorNames = naming == .gguf ? .gguf : .huggingFace
        let unpermuteQK = naming == .gguf && ggufPermutesQK
        let width = c.hiddenSize
        let f = c.feedForwardSize
        let embedding = try reader.matrix(names.embedding, [c.vocabularySize, width])
        // The canonical order of a permuted GGUF's q and k rows.
        let queryOrder = unpermuteQK ? Self.rowOrder(heads: c.headCount, headDim: c.headDim) : nil
        let keyOrder = unpermuteQK ? Self.rowOrder(heads: c.keyValueHeadCount, headDim: c.headDim) : nil
        var blocks: [BlockWeights] = []
        for i in 0..<c.layerCount {
            let part = { (p: String) in names.block(i, p) + names.weightSuffix }
            let biasOf = { (p: String) in names.block(i, p) + names.biasSuffix }
            let q = c.queryWidth
            let kv = c.keyValueWidth
            let qkv = try reader.matrix(
                [
                    .init(name: part("attn_q"), rows: q, rowOrder: queryOrder),
                    .init(name: part("attn_k"), rows: kv, rowOrder: keyOrder),
                    .init(name: part("attn_v"), rows: kv),
                ], columns: width)
            var qkvBias: Tensor? = nil
            if c.attentionBias {
                let bias = Tensor(uninitialized: [c.fusedQKVRows])
                try reader.read(biasOf("attn_q"), [q], into: bias.pointer)
                try reader.read(biasOf("attn_k"), [kv], into: bias.pointer + q)
                try reader.read(biasOf("attn_v"), [kv], into: bias.pointer + q + kv)
                if unpermuteQK {
                    Self.permuteRows(bias.pointer, heads: c.headCount, headDim: c.headDim, columns: 1, undo: true)
                    Self.permuteRows(bias.pointer + q, heads: c.keyValueHeadCount, headDim: c.headDim, columns: 1, undo: true)
                }
                qkvBias = bias
            }
            let gateUp = try reader.matrix(
                [.init(name: part("ffn_gate"), rows: f), .init(name: part("ffn_up"), rows: f)],
                columns: width)
            blocks.append(
                BlockWeights(
                    attentionNorm: try reader.tensor(part("attn_norm"), [width]),
                    qkv: qkv, qkvBias: qkvBias,
                    attentionOutput: try reader.matrix(part("attn_output"), [width, q]),
                    feedForwardNorm: try reader.tensor(part("ffn_norm"), [width]),
                    feedForwardInput: gateUp,
                    feedForwardDown: try reader.matrix(part("ffn_down"), [width, f])))
        }
        let outputNorm = try reader.tensor(names.outputNorm, [width])
        var output = embedding
        if reader.has(names.output) {
            if c.tiedEmbeddings {
                reader.consume(names.output)  // a tied checkpoint may still store the head
            } else {
                output = try reader.matrix(names.output, [c.vocabularySize, width])
            }
        } else if !c.tiedEmbeddings {
            throw ModelLoadError.missingTensor(names.output, file: reader.fileName)
        }
        // Llama 3.1-style RoPE scaling, already read into the config's frequencies.
        if naming == .gguf, reader.has("rope_freqs.weight") { reader.consume("rope_freqs.weight") }
        return ModelWeights(tokenEmbedding: embedding, blocks: blocks, outputNorm: outputNorm, output: output)
    }

    /// llama.cpp's `permute(w) = w.reshape(H, 2, D/2, in).swapaxes(1, 2)` (`undo: false`, for
    /// export) or its inverse (`undo: true`, at load): stored row `h·D + 2i + j` is the
    /// checkpoint's row `h·D + j·D/2 + i`.
    /// Row `i` of a head-permuted block of `heads · headDim` rows in canonical order is stored row `order[i]`.
    static func rowOrder(heads: Int, headDim: Int) -> [Int] {
        var order = (0..<(heads * headDim)).map(Float.init)
        order.withUnsafeMutableBufferPointer { permuteRows($0.baseAddress!, heads: heads, headDim: headDim, columns: 1, undo: true) }
        return order.map { Int($0) }
    }

    static func permuteRows(_ rows: UnsafeMutablePointer<Float>, heads: Int, headDim d: Int, columns: Int, undo: Bool) {
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: d * columns)
        defer { scratch.deallocate() }
        for h in 0..<heads {
            let head = rows + h * d * columns
            scratch.update(from: head, count: d * columns)
            for i in 0..<(d / 2) {
                for j in 0..<2 {
                    let (stored, original) = (2 * i + j, j * d / 2 + i)
                    let (to, from) = undo ? (original, stored) : (stored, original)
                    (head + to * columns).update(from: scratch + from * columns, count: columns)
                }
            }
        }
    }

    /// Configuration from GGUF metadata (`<arch>.embedding_length`, …).
    func config(gguf file: GGUFFile, architecture: Architecture) throws -> TransformerConfig {
        let keys = GGUFKeys(file: file, architecture: architecture.name)
        let width = try keys.dimension("embedding_length")
        let heads = try keys.dimension("attention.head_count")
        let headDim = try keys.optionalDimension("attention.key_length") ?? width / heads
        guard headDim >= 2 else {
            throw ModelLoadError.invalidConfig(
                key: keys.key("attention.key_length"), value: "\(headDim)",
                expected: "at least 2", file: keys.fileName)
        }
        let ropeDims = keys.optionalInt("rope.dimension_count") ?? headDim
        guard ropeDims == headDim else {
            throw ModelLoadError.invalidConfig(
                key: keys.key("rope.dimension_count"), value: "\(ropeDims)",
                expected: "\(headDim) (partial RoPE is not supported)", file: keys.fileName)
        }
        let base = keys.optionalDouble("rope.freq_base") ?? 10000
        var frequencies = RotaryEmbedding.standard(headDim: headDim, base: base)
        if let factors = file.shape(of: "rope_freqs.weight") {
            // Llama 3.1-style scaling is stored as per-frequency divisors.
            guard factors.reduce(1, *) == headDim / 2 else {
                throw ModelLoadError.shapeMismatch(
                    tensor: "rope_freqs.weight", expected: [headDim / 2],
                    actual: factors, file: keys.fileName)
            }
            let divisors = try file.readFloats("rope_freqs.weight")
            frequencies = zip(frequencies, divisors).map { $0 / $1 }
        }
        if let scaling = keys.optionalString("rope.scaling.type"), scaling != "none" {
            throw ModelLoadError.invalidConfig(
                key: keys.key("rope.scaling.type"), value: scaling,
                expected: "none (or Llama-3 rope_freqs)", file: keys.fileName)
        }
        let contextLength = try keys.dimension("context_length")
        if let window = keys.optionalInt("attention.sliding_window"), window < contextLength {
            throw ModelLoadError.invalidConfig(
                key: keys.key("attention.sliding_window"), value: "\(window)",
                expected: "none (sliding-window attention is not supported)", file: keys.fileName)
        }
        let vocabulary =
            try keys.optionalDimension("vocab_size")
            ?? file.shape(of: "token_embd.weight")?.first
            ?? file.array("tokenizer.ggml.tokens")?.count
        guard let vocabulary else { throw ModelLoadError.missingConfig(key: keys.key("vocab_size"), file: keys.fileName) }
        return TransformerConfig(
            architecture: architecture, vocabularySize: vocabulary, hiddenSize: width,
            feedForwardSize: try keys.dimension("feed_forward_length"), layerCount: try keys.dimension("block_count"),
            headCount: heads, keyValueHeadCount: try keys.optionalDimension("attention.head_count_kv") ?? heads,
            headDim: headDim, contextLength: contextLength,
            normKind: .rms, normEpsilon: Float(try keys.double("attention.layer_norm_rms_epsilon")),
            feedForward: .swiglu, positions: .rotary(theta: base, inverseFrequencies: frequencies),
            attentionBias: file.shape(of: "blk.0.attn_q.bias") != nil, projectionBias: false,
            tiedEmbeddings: file.shape(of: "output.weight") == nil)
    }

    /// Configuration from transformers' `LlamaConfig`, `MistralConfig` or `Qwen2Config`.
    func config(huggingFace json: HFConfig, architecture: Architecture) throws -> TransformerConfig {
        let file = json.url.path  // the full path, as HFConfigError gives: "config.json" alone names no model
        let width = try json.size("hidden_size")
        let heads = try json.size("num_attention_heads")
        let headDim = try json.size("head_dim", default: max(1, width / heads))
        guard headDim >= 2 else {
            throw ModelLoadError.invalidConfig(key: "head_dim", value: "\(headDim)", expected: "at least 2", file: file)
        }
        let activation = try json.string("hidden_act", default: "silu")
        guard activation == "silu" else {
            throw ModelLoadError.invalidConfig(key: "hidden_act", value: activation, expected: "silu", file: file)
        }
        if try json.bool("mlp_bias", default: false) {
            throw ModelLoadError.invalidConfig(key: "mlp_bias", value: "true", expected: "false", file: file)
        }
        let contextLength = try json.size("max_position_embeddings")
        if try json.bool("use_sliding_window", default: slidingWindowByDefault),
            let window = try json.intIfPresent("sliding_window"), window < contextLength
        {
            throw ModelLoadError.invalidConfig(
                key: "sliding_window", value: "\(window)",
                expected: "null or at least max_position_embeddings (sliding-window attention is not supported)",
                file: file)
        }
        let attentionBias = try alwaysAttentionBias ? true : json.bool("attention_bias", default: false)
        return TransformerConfig(
            architecture: architecture, vocabularySize: try json.size("vocab_size"), hiddenSize: width,
            feedForwardSize: try json.size("intermediate_size"), layerCount: try json.size("num_hidden_layers"),
            headCount: heads, keyValueHeadCount: try json.size("num_key_value_heads", default: heads),
            headDim: headDim, contextLength: contextLength,
            normKind: .rms, normEpsilon: Float(try json.double("rms_norm_eps")), feedForward: .swiglu,
            positions: try HuggingFaceConfig.rotaryPositions(json, headDim: headDim),
            attentionBias: attentionBias, projectionBias: false,
            tiedEmbeddings: try json.bool("tie_word_embeddings", default: tiedByDefault))
    }

    /// The keys transformers' `LlamaConfig`, `MistralConfig` and `Qwen2Config` read (RoPE
    /// scaling, which a GGUF stores as `rope_freqs.weight`, is the exporter's to add).
    func huggingFaceConfig(_ c: TransformerConfig) throws -> [(key: String, value: JSONValue)] {
        var entries: [(key: String, value: JSONValue)] = [
            ("hidden_size", .int(c.hiddenSize)), ("intermediate_size", .int(c.feedForwardSize)),
            ("num_hidden_layers", .int(c.layerCount)), ("num_attention_heads", .int(c.headCount)),
            ("num_key_value_heads", .int(c.keyValueHeadCount)), ("head_dim", .int(c.headDim)),
            ("max_position_embeddings", .int(c.contextLength)),
            ("rms_norm_eps", .decimal(c.normEpsilon)), ("hidden_act", .string("silu")),
        ]
        if !alwaysAttentionBias { entries.append(("attention_bias", .bool(c.attentionBias))) }
        entries.append(("mlp_bias", .bool(false)))
        guard case .rotary(let theta, _) = c.positions else {
            throw ArchitectureError.notExpressible("a \(c.architecture) model without rotary positions")
        }
        entries.append(("rope_theta", .decimal(Float(theta))))
        entries.append(("tie_word_embeddings", .bool(c.tiedEmbeddings)))
        return entries
    }

    func checkpointTensors(_ w: ModelWeights, config c: TransformerConfig, naming: CheckpointNaming) -> [CheckpointTensor] {
        let names: LlamaTensorNames = naming == .gguf ? .gguf : .huggingFace
        let permuteQK = naming == .gguf && ggufPermutesQK
        let q = c.queryWidth
        let kv = c.keyValueWidth
        let f = c.feedForwardSize
        // q and k rows, permuted per head when the format wants it.
        func qk(_ name: String, _ t: Tensor, _ range: Range<Int>, heads: Int) -> CheckpointTensor {
            permuteQK ? .permutedRows(name, t, range, heads: heads, headDim: c.headDim) : .rows(name, t, range)
        }
        func qk(_ name: String, _ m: WeightMatrix, _ range: Range<Int>, heads: Int) -> CheckpointTensor {
            permuteQK ? .permutedRows(name, m, range, heads: heads, headDim: c.headDim) : .rows(name, m, range)
        }
        var tensors: [CheckpointTensor] = [.rows(names.embedding, w.tokenEmbedding)]
        for (i, b) in w.blocks.enumerated() {
            let weight = { (part: String) in names.block(i, part) + names.weightSuffix }
            let bias = { (part: String) in names.block(i, part) + names.biasSuffix }
            tensors += [
                .rows(weight("attn_norm"), b.attentionNorm),
                qk(weight("attn_q"), b.qkv, 0..<q, heads: c.headCount),
                qk(weight("attn_k"), b.qkv, q..<(q + kv), heads: c.keyValueHeadCount),
                .rows(weight("attn_v"), b.qkv, (q + kv)..<(q + 2 * kv)),
            ]
            if let qkvBias = b.qkvBias {
                tensors += [
                    qk(bias("attn_q"), qkvBias, 0..<q, heads: c.headCount),
                    qk(bias("attn_k"), qkvBias, q..<(q + kv), heads: c.keyValueHeadCount),
                    .rows(bias("attn_v"), qkvBias, (q + kv)..<(q + 2 * kv)),
                ]
            }
            tensors += [
                .rows(weight("attn_output"), b.attentionOutput),
                .rows(weight("ffn_norm"), b.feedForwardNorm),
                .rows(weight("ffn_gate"), b.feedForwardInput, 0..<f),
                .rows(weight("ffn_up"), b.feedForwardInput, f..<(2 * f)),
                .rows(weight("ffn_down"), b.feedForwardDown),
            ]
        }
        tensors.append(.rows(names.outputNorm, w.outputNorm))
        if !c.tiedEmbeddings { tensors.append(.rows(names.output, w.output)) }
        return tensors
    }
}

/// Typed access to `<architecture>.<name>` GGUF hyperparameters with errors naming the key.
struct GGUFKeys {
    let file: GGUFFile
    let architecture: String
    var fileName: String { file.url.lastPathComponent }

    func key(_ name: String) -> String { "\(architecture).\(name)" }

    func optionalInt(_ name: String) -> Int? { file.int(key(name)) }

    /// A size: a whole number from 1 to ``TransformerConfig/dimensionLimit``.
    func dimension(_ name: String) throws -> Int {
        guard let v = try optionalDimension(name) else { throw ModelLoadError.missingConfig(key: key(name), file: fileName) }
        return v
    }

    func optionalDimension(_ name: String) throws -> Int? {
        guard let value = file.metadata[key(name)] else { return nil }
        guard let v = value.intValue, v >= 1, v <= TransformerConfig.dimensionLimit else {
            throw ModelLoadError.invalidConfig(
                key: key(name), value: "\(value.intValue.map(String.init) ?? "a non-integer")",
                expected: "a size from 1 to \(TransformerConfig.dimensionLimit)", file: fileName)
        }
        return v
    }
    func optionalDouble(_ name: String) -> Double? { file.double(key(name)) }
    func optionalString(_ name: String) -> String? { file.string(key(name)) }

    func int(_ name: String) throws -> Int {
        guard let v = optionalInt(name) else { throw ModelLoadError.missingConfig(key: key(name), file: fileName) }
        guard v > 0 else {
            throw ModelLoadError.invalidConfig(key: key(name), value: "\(v)", expected: "a positive integer", file: fileName)
        }
        return v
    }

    func double(_ name: String) throws -> Double {
        guard let v = optionalDouble(name) else { throw ModelLoadError.missingConfig(key: key(name), file: fileName) }
        return v
    }
}
