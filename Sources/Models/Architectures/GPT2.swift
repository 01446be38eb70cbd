import Foundation
import ModelFormats
import TensorCore

// Port of transformers/models/gpt2/modeling_gpt2.py (5.24.0): pre-norm blocks with LayerNorm,
// learned absolute positions, fused q/k/v (`c_attn`), a GELU-tanh MLP, biases everywhere and a
// tied output head. Hugging Face stores the linear weights as Conv1D (`[in, out]`); they are
// transposed to `[out, in]` at load. llama.cpp's converter already stores them `[out, in]`.

/// GPT-2 checkpoints.
struct GPT2Family: ModelFamily {
    func weights(_ reader: inout CheckpointReader, config c: TransformerConfig, naming: CheckpointNaming) throws -> ModelWeights {
        switch naming {
        case .gguf: try weights(gguf: &reader, config: c)
        case .huggingFace: try weights(huggingFace: &reader, config: c)
        }
    }

    /// Weights from a Hugging Face checkpoint (`transformer.h.0.attn.c_attn.weight`, or the
    /// same names without `transformer.` as in the original OpenAI upload).
    func weights(huggingFace reader: inout CheckpointReader, config c: TransformerConfig) throws -> ModelWeights {
        let prefix = reader.has("transformer.wte.weight") ? "transformer." : ""
        let width = c.hiddenSize
        let f = c.feedForwardSize
        var blocks: [BlockWeights] = []
        for i in 0..<c.layerCount {
            let p = "\(prefix)h.\(i)."
            let qkv = Tensor(uninitialized: [c.fusedQKVRows, width])
            try reader.readTransposed(p + "attn.c_attn.weight", [3 * width, width], into: qkv.pointer)
            let attentionOutput = Tensor(uninitialized: [width, width])
            try reader.readTransposed(p + "attn.c_proj.weight", [width, width], into: attentionOutput.pointer)
            let up = Tensor(uninitialized: [f, width])
            try reader.readTransposed(p + "mlp.c_fc.weight", [f, width], into: up.pointer)
            let down = Tensor(uninitialized: [width, f])
            try reader.readTransposed(p + "mlp.c_proj.weight", [width, f], into: down.pointer)
            blocks.append(
                BlockWeights(
                    attentionNorm: try reader.tensor(p + "ln_1.weight", [width]),
                    attentionNormBias: try reader.tensor(p + "ln_1.bias", [width]),
                    qkv: WeightMatrix(qkv), qkvBias: try reader.tensor(p + "attn.c_attn.bias", [3 * width]),
                    attentionOutput: WeightMatrix(attentionOutput),
                    attentionOutputBias: try reader.tensor(p + "attn.c_proj.bias", [width]),
                    feedForwardNorm: try reader.tensor(p + "ln_2.weight", [width]),
                    feedForwardNormBias: try reader.tensor(p + "ln_2.bias", [width]),
                    feedForwardInput: WeightMatrix(up), feedForwardInputBias: try reader.tensor(p + "mlp.c_fc.bias", [f]),
                    feedForwardDown: WeightMatrix(down), feedForwardDownBias: try reader.tensor(p + "mlp.c_proj.bias", [width])))
        }
        let embedding = try reader.matrix(prefix + "wte.weight", [c.vocabularySize, width])
        if reader.has("lm_head.weight") { reader.consume("lm_head.weight") }  // tied: same values
        return ModelWeights(
            tokenEmbedding: embedding,
            positionEmbedding: try reader.tensor(prefix + "wpe.weight", [c.contextLength, width]),
            blocks: blocks,
            outputNorm: try reader.tensor(prefix + "ln_f.weight", [width]),
            outputNormBias: try reader.tensor(prefix + "ln_f.bias", [width]),
            output: embedding)
    }

    /// Weights from a llama.cpp GGUF (`blk.0.attn_qkv.weight`, already `[out, in]`).
    func weights(gguf reader: inout CheckpointReader, config c: TransformerConfig) throws -> ModelWeights {
        let width = c.hiddenSize
        let f = c.feedForwardSize
        var blocks: [BlockWeights] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            blocks.append(
                BlockWeights(
                    attentionNorm: try reader.tensor(p + "attn_norm.weight", [width]),
                    attentionNormBias: try reader.tensor(p + "attn_norm.bias", [width]),
                    qkv: try reader.matrix(p + "attn_qkv.weight", [3 * width, width]),
                    qkvBias: try reader.tensor(p + "attn_qkv.bias", [3 * width]),
                    attentionOutput: try reader.matrix(p + "attn_output.weight", [width, width]),
                    attentionOutputBias: try reader.tensor(p + "attn_output.bias", [width]),
                    feedForwardNorm: try reader.tensor(p + "ffn_norm.weight", [width]),
                    feedForwardNormBias: try reader.tensor(p + "ffn_norm.bias", [width]),
                    feedForwardInput: try reader.matrix(p + "ffn_up.weight", [f, width]),
                    feedForwardInputBias: try reader.tensor(p + "ffn_up.bias", [f]),
                    feedForwardDown: try reader.matrix(p + "ffn_down.weight", [width, f]),
                    feedForwardDownBias: try reader.tensor(p + "ffn_down.bias", [width])))
        }
        let embedding = try reader.matrix("token_embd.weight", [c.vocabularySize, width])
        let output = c.tiedEmbeddings ? embedding : try reader.matrix("output.weight", [c.vocabularySize, width])
        return ModelWeights(
            tokenEmbedding: embedding,
            positionEmbedding: try reader.tensor("position_embd.weight", [c.contextLength, width]),
            blocks: blocks,
            outputNorm: try reader.tensor("output_norm.weight", [width]),
            outputNormBias: try reader.tensor("output_norm.bias", [width]),
            output: output)
    }

    func config(gguf file: GGUFFile, architecture: Architecture) throws -> TransformerConfig {
        let keys = GGUFKeys(file: file, architecture: architecture.name)
        let width = try keys.dimension("embedding_length")
        let heads = try keys.dimension("attention.head_count")
        let vocabulary = file.shape(of: "token_embd.weight")?.first ?? file.array("tokenizer.ggml.tokens")?.count
        guard let vocabulary else { throw ModelLoadError.missingConfig(key: keys.key("vocab_size"), file: keys.fileName) }
        return TransformerConfig(
            architecture: architecture, vocabularySize: vocabulary, hiddenSize: width,
            feedForwardSize: try keys.optionalDimension("feed_forward_length") ?? 4 * width,
            layerCount: try keys.dimension("block_count"), headCount: heads, keyValueHeadCount: heads,
            headDim: width / heads, contextLength: try keys.dimension("context_length"), normKind: .layer,
            normEpsilon: Float(try keys.double("attention.layer_norm_epsilon")), feedForward: .geluTanh,
            positions: .learned, attentionBias: true, projectionBias: true,
            tiedEmbeddings: file.shape(of: "output.weight") == nil)
    }

    /// Configuration from transformers' `GPT2Config`.
    func config(huggingFace json: HFConfig, architecture: Architecture) throws -> TransformerConfig {
        let file = json.url.path  // the full path, as HFConfigError gives: "config.json" alone names no model
        let width = try json.size("n_embd")
        let heads = try json.size("n_head")
        let activation = try json.string("activation_function", default: "gelu_new")
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw ModelLoadError.invalidConfig(
                key: "activation_function", value: activation,
                expected: "gelu_new", file: file)
        }
        return TransformerConfig(
            architecture: architecture, vocabularySize: try json.size("vocab_size"), hiddenSize: width,
            feedForwardSize: try json.size("n_inner", default: 4 * width),
            layerCount: try json.size("n_layer"), headCount: heads, keyValueHeadCount: heads,
            headDim: max(1, width / heads), contextLength: try json.size("n_positions"), normKind: .layer,
            normEpsilon: Float(try json.double("layer_norm_epsilon", default: 1e-5)),
            feedForward: .geluTanh, positions: .learned, attentionBias: true, projectionBias: true,
            tiedEmbeddings: true)
    }

    /// The keys transformers' `GPT2Config` reads; its head is always tied.
    func huggingFaceConfig(_ c: TransformerConfig) throws -> [(key: String, value: JSONValue)] {
        guard c.tiedEmbeddings else {
            throw ArchitectureError.notExpressible("transformers' GPT-2 always ties its output head; this one has its own")
        }
        return [
            ("n_embd", .int(c.hiddenSize)), ("n_inner", .int(c.feedForwardSize)), ("n_layer", .int(c.layerCount)),
            ("n_head", .int(c.headCount)), ("n_positions", .int(c.contextLength)),
            ("layer_norm_epsilon", .decimal(c.normEpsilon)), ("activation_function", .string("gelu_new")),
            ("tie_word_embeddings", .bool(true)),
        ]
    }

    /// GPT-2's tensor names in one format, and whether its linear weights are stored `[in, out]`.
    struct TensorNames: Sendable {
        var embedding: String, positions: String, outputNorm: String, output: String?
        var block: @Sendable (Int) -> String
        /// Attention norm, q/k/v, attention output, MLP norm, MLP up, MLP down.
        var modules: [String]
        var transposedLinear: Bool

        /// llama.cpp's: already `[out, in]`, q/k/v fused as `attn_qkv`.
        static let gguf = TensorNames(
            embedding: "token_embd", positions: "position_embd", outputNorm: "output_norm", output: "output",
            block: { "blk.\($0)." }, modules: ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"],
            transposedLinear: false)
        /// transformers' (`transformer.h.0.attn.c_attn.weight`, Conv1D `[in, out]`), whose head is always tied.
        static let huggingFace = TensorNames(
            embedding: "transformer.wte", positions: "transformer.wpe", outputNorm: "transformer.ln_f", output: nil,
            block: { "transformer.h.\($0)." }, modules: ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"],
            transposedLinear: true)
    }

    func checkpointTensors(_ w: ModelWeights, config c: TransformerConfig, naming: CheckpointNaming) -> [CheckpointTensor] {
        let names: TensorNames = naming == .gguf ? .gguf : .huggingFace
        let linear = { (name: String, m: WeightMatrix) in names.transposedLinear ? CheckpointTensor.transposed(name, m) : .rows(name, m) }
        var tensors: [CheckpointTensor] = [.rows(names.embedding + ".weight", w.tokenEmbedding)]
        if let positions = w.positionEmbedding { tensors.append(.rows(names.positions + ".weight", positions)) }
        for (i, b) in w.blocks.enumerated() {
            let m = names.modules.map { names.block(i) + $0 }
            tensors += [
                .rows(m[0] + ".weight", b.attentionNorm), linear(m[1] + ".weight", b.qkv),
                linear(m[2] + ".weight", b.attentionOutput), .rows(m[3] + ".weight", b.feedForwardNorm),
                linear(m[4] + ".weight", b.feedForwardInput), linear(m[5] + ".weight", b.feedForwardDown),
            ]
            let biases = [
                b.attentionNormBias, b.qkvBias, b.attentionOutputBias, b.feedForwardNormBias,
                b.feedForwardInputBias, b.feedForwardDownBias,
            ]
            tensors += zip(m, biases).compactMap { module, bias in bias.map { .rows(module + ".bias", $0) } }
        }
        tensors.append(.rows(names.outputNorm + ".weight", w.outputNorm))
        if let bias = w.outputNormBias { tensors.append(.rows(names.outputNorm + ".bias", bias)) }
        if !c.tiedEmbeddings, let output = names.output { tensors.append(.rows(output + ".weight", w.output)) }
        return tensors
    }
}
