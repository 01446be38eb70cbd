import Foundation
import ModelFormats
import TensorCore

// Port of transformers/models/gpt2/modeling_gpt2.py (5.24.0): pre-norm blocks with LayerNorm,
// learned absolute positions, fused q/k/v (`c_attn`), a GELU-tanh MLP, biases everywhere and a
// tied output head. Hugging Face stores the linear weights as Conv1D (`[in, out]`); they are
// transposed to `[out, in]` at load. llama.cpp's converter already stores them `[out, in]`.

enum GPT2 {
    /// Weights from a Hugging Face checkpoint (`transformer.h.0.attn.c_attn.weight`, or the
    /// same names without `transformer.` as in the original OpenAI upload).
    static func weights(huggingFace reader: inout CheckpointReader, config c: TransformerConfig) throws -> ModelWeights {
        let prefix = reader.has("transformer.wte.weight") ? "transformer." : ""
        let width = c.hiddenSize, f = c.feedForwardSize
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
            blocks.append(BlockWeights(
                attentionNorm: try reader.tensor(p + "ln_1.weight", [width]),
                attentionNormBias: try reader.tensor(p + "ln_1.bias", [width]),
                qkv: qkv, qkvBias: try reader.tensor(p + "attn.c_attn.bias", [3 * width]),
                attentionOutput: attentionOutput,
                attentionOutputBias: try reader.tensor(p + "attn.c_proj.bias", [width]),
                feedForwardNorm: try reader.tensor(p + "ln_2.weight", [width]),
                feedForwardNormBias: try reader.tensor(p + "ln_2.bias", [width]),
                feedForwardInput: up, feedForwardInputBias: try reader.tensor(p + "mlp.c_fc.bias", [f]),
                feedForwardDown: down, feedForwardDownBias: try reader.tensor(p + "mlp.c_proj.bias", [width])))
        }
        let embedding = try reader.tensor(prefix + "wte.weight", [c.vocabularySize, width])
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
    static func weights(gguf reader: inout CheckpointReader, config c: TransformerConfig) throws -> ModelWeights {
        let width = c.hiddenSize, f = c.feedForwardSize
        var blocks: [BlockWeights] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            blocks.append(BlockWeights(
                attentionNorm: try reader.tensor(p + "attn_norm.weight", [width]),
                attentionNormBias: try reader.tensor(p + "attn_norm.bias", [width]),
                qkv: try reader.tensor(p + "attn_qkv.weight", [3 * width, width]),
                qkvBias: try reader.tensor(p + "attn_qkv.bias", [3 * width]),
                attentionOutput: try reader.tensor(p + "attn_output.weight", [width, width]),
                attentionOutputBias: try reader.tensor(p + "attn_output.bias", [width]),
                feedForwardNorm: try reader.tensor(p + "ffn_norm.weight", [width]),
                feedForwardNormBias: try reader.tensor(p + "ffn_norm.bias", [width]),
                feedForwardInput: try reader.tensor(p + "ffn_up.weight", [f, width]),
                feedForwardInputBias: try reader.tensor(p + "ffn_up.bias", [f]),
                feedForwardDown: try reader.tensor(p + "ffn_down.weight", [width, f]),
                feedForwardDownBias: try reader.tensor(p + "ffn_down.bias", [width])))
        }
        let embedding = try reader.tensor("token_embd.weight", [c.vocabularySize, width])
        let output = c.tiedEmbeddings ? embedding : try reader.tensor("output.weight", [c.vocabularySize, width])
        return ModelWeights(
            tokenEmbedding: embedding,
            positionEmbedding: try reader.tensor("position_embd.weight", [c.contextLength, width]),
            blocks: blocks,
            outputNorm: try reader.tensor("output_norm.weight", [width]),
            outputNormBias: try reader.tensor("output_norm.bias", [width]),
            output: output)
    }

    static func config(gguf file: GGUFFile) throws -> TransformerConfig {
        let keys = GGUFKeys(file: file, architecture: "gpt2")
        let width = try keys.dimension("embedding_length")
        let heads = try keys.dimension("attention.head_count")
        let vocabulary = file.shape(of: "token_embd.weight")?.first ?? file.array("tokenizer.ggml.tokens")?.count
        guard let vocabulary else { throw ModelLoadError.missingConfig(key: keys.key("vocab_size"), file: keys.fileName) }
        return TransformerConfig(
            architecture: "gpt2", vocabularySize: vocabulary, hiddenSize: width,
            feedForwardSize: try keys.optionalDimension("feed_forward_length") ?? 4 * width,
            layerCount: try keys.dimension("block_count"), headCount: heads, keyValueHeadCount: heads,
            headDim: width / heads, contextLength: try keys.dimension("context_length"), normKind: .layer,
            normEpsilon: Float(try keys.double("attention.layer_norm_epsilon")), feedForward: .geluTanh,
            positions: .learned, attentionBias: true, projectionBias: true,
            tiedEmbeddings: file.shape(of: "output.weight") == nil)
    }
}
