/// The hyperparameters of a decoder-only transformer, in one architecture-neutral form.
///
/// Model families (``Architecture``) fill it from GGUF metadata or a Hugging Face
/// `config.json`; the forward pass reads only this.
public struct TransformerConfig: Codable, Sendable, Equatable {
    public enum NormKind: String, Codable, Sendable { case rms, layer }
    public enum FeedForwardKind: String, Codable, Sendable {
        /// `down(silu(gate(x)) · up(x))`: Llama, Qwen2, Mistral.
        case swiglu
        /// `down(gelu_tanh(up(x)))`: GPT-2.
        case geluTanh
        /// `down(gelu_tanh(gate(x)) · up(x))`: Gemma.
        case gegluTanh
    }
    public enum PositionKind: Codable, Sendable, Equatable {
        /// Rotary embeddings with base `theta` and these inverse frequencies (`headDim/2`
        /// values, after any scaling).
        case rotary(theta: Double, inverseFrequencies: [Float])
        /// Learned absolute position embeddings (`position_embd`).
        case learned
    }

    /// The checkpoint's architecture (`llama`, `qwen2`, `gpt2`), which knows its family.
    public var architecture: Architecture
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var feedForwardSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var keyValueHeadCount: Int
    public var headDim: Int
    public var contextLength: Int
    public var normKind: NormKind
    public var normEpsilon: Float
    public var feedForward: FeedForwardKind
    public var positions: PositionKind
    /// q/k/v projections carry biases (Qwen2, GPT-2).
    public var attentionBias: Bool
    /// The attention output projection, MLP projections and norms carry biases (GPT-2).
    public var projectionBias: Bool
    /// The output head reuses the token embedding.
    public var tiedEmbeddings: Bool

    // Gemma's additions; the defaults are the plain pre-norm decoder.

    /// Factor of the token embeddings (Gemma: `√C`).
    public var embeddingScale: Float = 1
    /// Per-head RMSNorm of the queries and keys before RoPE (`attn_q_norm`, `attn_k_norm`).
    public var queryKeyNorm = false
    /// RMSNorm of the attention and MLP outputs before they join the residual stream
    /// (`post_attention_norm`, `post_ffw_norm`).
    public var outputNorms = false
    /// Sliding-window attention on some blocks, with RoPE of their own.
    public var slidingWindow: SlidingWindow?

    /// Blocks that attend only to the last `size` positions (the query's own included), as
    /// Gemma 3 interleaves them with global ones.
    public struct SlidingWindow: Codable, Sendable, Equatable {
        public var size: Int
        /// The blocks with the window, ascending.
        public var localLayers: [Int]
        /// The local blocks' RoPE inverse frequencies.
        public var inverseFrequencies: [Float]

        public func isLocal(_ layer: Int) -> Bool { localLayers.contains(layer) }
    }

    /// The window of `layer`'s attention, nil for full causal attention.
    public func window(layer: Int) -> Int? {
        guard let slidingWindow, slidingWindow.isLocal(layer) else { return nil }
        return slidingWindow.size
    }

    public init(
        architecture: Architecture, vocabularySize: Int, hiddenSize: Int, feedForwardSize: Int,
        layerCount: Int, headCount: Int, keyValueHeadCount: Int, headDim: Int, contextLength: Int,
        normKind: NormKind, normEpsilon: Float, feedForward: FeedForwardKind,
        positions: PositionKind, attentionBias: Bool, projectionBias: Bool, tiedEmbeddings: Bool
    ) {
        self.architecture = architecture
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.feedForwardSize = feedForwardSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.keyValueHeadCount = keyValueHeadCount
        self.headDim = headDim
        self.contextLength = contextLength
        self.normKind = normKind
        self.normEpsilon = normEpsilon
        self.feedForward = feedForward
        self.positions = positions
        self.attentionBias = attentionBias
        self.projectionBias = projectionBias
        self.tiedEmbeddings = tiedEmbeddings
    }

    /// Width of the query projection output, `H · D`.
    public var queryWidth: Int { headCount * headDim }
    /// Width of the key (and value) projection output, `Hkv · D`.
    public var keyValueWidth: Int { keyValueHeadCount * headDim }
    /// Rows of the fused q/k/v weight: `H·D + 2·Hkv·D`.
    public var fusedQKVRows: Int { queryWidth + 2 * keyValueWidth }
    /// Rows of the fused feed-forward input weight (`[gate; up]` when gated).
    public var feedForwardInputRows: Int { feedForward.isGated ? 2 * feedForwardSize : feedForwardSize }

    /// The largest dimension a checkpoint may declare (hidden, MLP and vocabulary sizes, context,
    /// heads): far above any real model, far below what would overflow a product of two.
    public static let dimensionLimit = 1 << 24

    /// Checks what no single key can: that the heads group evenly and that the dimensions fit the
    /// weights the checkpoint actually holds (`tensorElements` in all), before anything is allocated.
    ///
    /// - Throws: ``ModelLoadError/invalidConfig(key:value:expected:file:)``.
    public func validate(tensorElements: Int, file: String) throws {
        guard headCount % keyValueHeadCount == 0 else {
            throw ModelLoadError.invalidConfig(
                key: "key-value head count", value: "\(keyValueHeadCount)",
                expected: "a divisor of the head count \(headCount)", file: file)
        }
        // Overflow-checked, so that absurd dimensions cannot wrap around to a small count.
        func product(_ values: Int...) -> Int? {
            values.reduce(Int?(1)) { p, v in
                p.flatMap {
                    let r = $0.multipliedReportingOverflow(by: v)
                    return r.overflow ? nil : r.partialValue
                }
            }
        }
        let perBlock = [
            product(hiddenSize, headCount + 2 * keyValueHeadCount, headDim), product(headCount, headDim, hiddenSize),
            product(hiddenSize, feedForwardSize, feedForward.isGated ? 3 : 2),
        ]
        var needed = product(vocabularySize, hiddenSize)
        for part in perBlock {
            needed = needed.flatMap { n in
                part.flatMap { product($0, layerCount) }.flatMap {
                    let r = n.addingReportingOverflow($0)
                    return r.overflow ? nil : r.partialValue
                }
            }
        }
        guard let needed, needed <= tensorElements else {
            throw ModelLoadError.invalidConfig(
                key: "dimensions",
                value:
                    "vocabulary \(vocabularySize), hidden \(hiddenSize), MLP \(feedForwardSize), \(layerCount) layers, \(headCount)×\(headDim) heads",
                expected: "sizes that fit the \(tensorElements) weights in the file", file: file)
        }
    }

    /// Number of weights multiplied per token by the linear layers and the output head
    /// (the "2 FLOP per weight per token" count of a forward pass).
    public var matmulWeightsPerToken: Int {
        let perBlock =
            hiddenSize * fusedQKVRows + queryWidth * hiddenSize
            + hiddenSize * feedForwardInputRows + feedForwardSize * hiddenSize
        return layerCount * perBlock + vocabularySize * hiddenSize
    }
}
