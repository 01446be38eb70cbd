import TensorCore

/// How a model holds its matrices in memory.
public enum WeightPrecision: String, Sendable, CaseIterable {
    /// Every matrix dequantized to float32 at load: the exact reference path, 4–8× the memory
    /// of a quantized file.
    case float32 = "f32"
    /// Matrices stay in the file's block formats where the quantized kernels have them
    /// (GGUF Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16), memory-mapped; a matrix an
    /// edit writes becomes float32 (only that one). Other files and types load as float32.
    /// Activations stay float32, so results are the float32 path's up to summation order.
    case native
    /// As ``native``, with decode-sized products on int8-quantized activations as llama.cpp
    /// computes them: faster kernels for K-quants, at the cost of 8-bit rounding that moves
    /// the next-token distributions slightly (`ibke bench --agreement` measures how much).
    case nativeInt8 = "native-int8"

    /// Whether matrices stay in their blocks.
    public var keepsBlocks: Bool { self != .float32 }
}

/// The weights of one transformer block in canonical orientation (`[out, in]`).
///
/// q/k/v live in one fused matrix and gate/up in another, so a single matmul computes each
/// group; the individual matrices are row views of the fused ones (``ParameterID``), and
/// editing a view edits the fused matrix.
public struct BlockWeights: Sendable {
    public var attentionNorm: Tensor
    public var attentionNormBias: Tensor?
    /// `[H·D + 2·Hkv·D, C]`: rows of q, then k, then v.
    public var qkv: WeightMatrix
    public var qkvBias: Tensor?
    /// `[C, H·D]`.
    public var attentionOutput: WeightMatrix
    public var attentionOutputBias: Tensor?
    public var feedForwardNorm: Tensor
    public var feedForwardNormBias: Tensor?
    /// `[2F, C]` (`[gate; up]`) for SwiGLU, `[F, C]` (up) for GELU.
    public var feedForwardInput: WeightMatrix
    public var feedForwardInputBias: Tensor?
    /// `[C, F]`.
    public var feedForwardDown: WeightMatrix
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
    public var tokenEmbedding: WeightMatrix
    /// `[contextLength, C]`, for learned positions (GPT-2).
    public var positionEmbedding: Tensor?
    public var blocks: [BlockWeights]
    public var outputNorm: Tensor
    public var outputNormBias: Tensor?
    /// `[V, C]`; the token embedding itself when embeddings are tied.
    public var output: WeightMatrix
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
    /// The stored matrix a parameter lives in (fused for q/k/v and gate/up) and its rows there;
    /// nil for a norm vector or a matrix the architecture lacks (the gate of a GELU network).
    public func matrix(_ id: ParameterID, config: TransformerConfig) -> (matrix: WeightMatrix, rows: Range<Int>)? {
        guard id.layer >= 0 && id.layer < blocks.count else { return nil }
        let block = blocks[id.layer]
        let q = config.queryWidth
        let kv = config.keyValueWidth
        let f = config.feedForwardSize
        switch id.kind {
        case .attentionNorm, .feedForwardNorm: return nil
        case .attentionQuery: return (block.qkv, 0..<q)
        case .attentionKey: return (block.qkv, q..<(q + kv))
        case .attentionValue: return (block.qkv, (q + kv)..<(q + 2 * kv))
        case .attentionOutput: return (block.attentionOutput, 0..<block.attentionOutput.rows)
        case .feedForwardGate: return config.feedForward.isGated ? (block.feedForwardInput, 0..<f) : nil
        case .feedForwardUp:
            return config.feedForward.isGated ? (block.feedForwardInput, f..<(2 * f)) : (block.feedForwardInput, 0..<f)
        case .feedForwardDown: return (block.feedForwardDown, 0..<block.feedForwardDown.rows)
        }
    }

    /// A parameter's shape, without touching its values; nil for a parameter the model lacks.
    public func shape(of id: ParameterID, config: TransformerConfig) -> [Int]? {
        guard id.layer >= 0 && id.layer < blocks.count else { return nil }
        switch id.kind {
        case .attentionNorm: return blocks[id.layer].attentionNorm.shape
        case .feedForwardNorm: return blocks[id.layer].feedForwardNorm.shape
        default: return matrix(id, config: config).map { [$0.rows.count, $0.matrix.columns] }
        }
    }

    /// The parameter's float32 values, writable in place (a view into the fused matrix): what
    /// an edit applied in place writes. A quantized matrix is converted to float32 by this call
    /// (``WeightMatrix/values()``); read-only uses take ``matrix(_:config:)`` or ``shape(of:config:)``.
    public func tensor(_ id: ParameterID, config: TransformerConfig) -> Tensor? {
        guard id.layer >= 0 && id.layer < blocks.count else { return nil }
        switch id.kind {
        case .attentionNorm: return blocks[id.layer].attentionNorm
        case .feedForwardNorm: return blocks[id.layer].feedForwardNorm
        default:
            guard let (matrix, rows) = matrix(id, config: config) else { return nil }
            return matrix.values().rows(rows)
        }
    }
}
