import TensorCore

/// The weights of one transformer block in canonical orientation (`[out, in]`).
///
/// q/k/v live in one fused matrix and gate/up in another, so a single matmul computes each
/// group; the individual matrices are row views of the fused ones (``ParameterID``), and
/// editing a view edits the fused matrix.
public struct BlockWeights: Sendable {
    public var attentionNorm: Tensor
    public var attentionNormBias: Tensor?
    /// `[H·D + 2·Hkv·D, C]`: rows of q, then k, then v.
    public var qkv: Tensor
    public var qkvBias: Tensor?
    /// `[C, H·D]`.
    public var attentionOutput: Tensor
    public var attentionOutputBias: Tensor?
    public var feedForwardNorm: Tensor
    public var feedForwardNormBias: Tensor?
    /// `[2F, C]` (`[gate; up]`) for SwiGLU, `[F, C]` (up) for GELU.
    public var feedForwardInput: Tensor
    public var feedForwardInputBias: Tensor?
    /// `[C, F]`.
    public var feedForwardDown: Tensor
    public var feedForwardDownBias: Tensor?
    /// `[D]` each: Gemma's per-head query and key norms.
    public var queryNorm: Tensor? = nil
    public var keyNorm: Tensor? = nil
    /// `[C]` each: Gemma's norms of the attention and MLP outputs.
    public var postAttentionNorm: Tensor? = nil
    public var postFeedForwardNorm: Tensor? = nil
}

/// All weights of a decoder-only language model.
public struct ModelWeights: Sendable {
    /// `[V, C]`.
    public var tokenEmbedding: Tensor
    /// `[contextLength, C]`, for learned positions (GPT-2).
    public var positionEmbedding: Tensor?
    public var blocks: [BlockWeights]
    public var outputNorm: Tensor
    public var outputNormBias: Tensor?
    /// `[V, C]`; the token embedding itself when embeddings are tied.
    public var output: Tensor
}

/// A typed name of one weight matrix or vector, for editors and gradients.
///
/// Its ``name`` is the GGUF-style canonical name (`blk.8.ffn_down.weight`) used in deltas,
/// statistics caches and exported files.
public struct ParameterID: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case attentionNorm = "attn_norm"
        case attentionQuery = "attn_q"
        case attentionKey = "attn_k"
        case attentionValue = "attn_v"
        case attentionOutput = "attn_output"
        case feedForwardNorm = "ffn_norm"
        case feedForwardGate = "ffn_gate"
        case feedForwardUp = "ffn_up"
        case feedForwardDown = "ffn_down"
    }

    public var layer: Int
    public var kind: Kind

    public init(layer: Int, _ kind: Kind) {
        self.layer = layer
        self.kind = kind
    }

    public var name: String { "blk.\(layer).\(kind.rawValue).weight" }
    public var description: String { name }
}

extension ModelWeights {
    /// The tensor a parameter names: a view into the (possibly fused) stored matrix, so
    /// writing through it changes the model. Nil for a matrix the architecture lacks
    /// (the gate of a GELU network).
    public func tensor(_ id: ParameterID, config: TransformerConfig) -> Tensor? {
        guard id.layer >= 0 && id.layer < blocks.count else { return nil }
        let block = blocks[id.layer]
        let q = config.queryWidth, kv = config.keyValueWidth, f = config.feedForwardSize
        switch id.kind {
        case .attentionNorm: return block.attentionNorm
        case .attentionQuery: return block.qkv.rows(0..<q)
        case .attentionKey: return block.qkv.rows(q..<(q + kv))
        case .attentionValue: return block.qkv.rows((q + kv)..<(q + 2 * kv))
        case .attentionOutput: return block.attentionOutput
        case .feedForwardNorm: return block.feedForwardNorm
        case .feedForwardGate:
            return config.feedForward.isGated ? block.feedForwardInput.rows(0..<f) : nil
        case .feedForwardUp:
            return config.feedForward.isGated
                ? block.feedForwardInput.rows(f..<(2 * f)) : block.feedForwardInput
        case .feedForwardDown: return block.feedForwardDown
        }
    }
}
