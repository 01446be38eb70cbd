import Foundation
import ModelFormats
import TensorCore

/// Mapping of Hugging Face `config.json` files to ``TransformerConfig``.
enum HuggingFaceConfig {
    static func transformerConfig(_ json: HFConfig, modelType: String) throws -> TransformerConfig {
        let file = json.url.path  // the full path, as HFConfigError gives: "config.json" alone names no model
        /// A size: a whole number from 1 to ``TransformerConfig/dimensionLimit``.
        func size(_ key: String, default fallback: Int? = nil) throws -> Int {
            guard let v = try json.intIfPresent(key) else {
                if let fallback { return fallback }
                return try json.int(key)  // throws the missing-key error
            }
            guard v >= 1, v <= TransformerConfig.dimensionLimit else {
                throw ModelLoadError.invalidConfig(key: key, value: "\(v)", expected: "a size from 1 to \(TransformerConfig.dimensionLimit)",
                                                   file: file)
            }
            return v
        }
        switch modelType {
        case "llama", "mistral", "qwen2":
            let width = try size("hidden_size")
            let heads = try size("num_attention_heads")
            let headDim = try size("head_dim", default: max(1, width / heads))
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
            let attentionBias = modelType == "qwen2" ? true : try json.bool("attention_bias", default: false)
            return TransformerConfig(
                architecture: modelType, vocabularySize: try size("vocab_size"), hiddenSize: width,
                feedForwardSize: try size("intermediate_size"), layerCount: try size("num_hidden_layers"),
                headCount: heads, keyValueHeadCount: try size("num_key_value_heads", default: heads),
                headDim: headDim, contextLength: try size("max_position_embeddings"),
                normKind: .rms, normEpsilon: Float(try json.double("rms_norm_eps")), feedForward: .swiglu,
                positions: try rotaryPositions(json, headDim: headDim),
                attentionBias: attentionBias, projectionBias: false,
                tiedEmbeddings: try json.bool("tie_word_embeddings", default: modelType == "qwen2"))
        case "gpt2":
            let width = try size("n_embd")
            let heads = try size("n_head")
            let activation = try json.string("activation_function", default: "gelu_new")
            guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
                throw ModelLoadError.invalidConfig(key: "activation_function", value: activation,
                                                   expected: "gelu_new", file: file)
            }
            return TransformerConfig(
                architecture: "gpt2", vocabularySize: try size("vocab_size"), hiddenSize: width,
                feedForwardSize: try size("n_inner", default: 4 * width),
                layerCount: try size("n_layer"), headCount: heads, keyValueHeadCount: heads,
                headDim: max(1, width / heads), contextLength: try size("n_positions"), normKind: .layer,
                normEpsilon: Float(try json.double("layer_norm_epsilon", default: 1e-5)),
                feedForward: .geluTanh, positions: .learned, attentionBias: true, projectionBias: true,
                tiedEmbeddings: true)
        default:
            throw ModelLoadError.unsupportedArchitecture(modelType, file: file, supported: ModelLoader.supportedArchitectures)
        }
    }

    /// RoPE inverse frequencies from `rope_parameters` (transformers ≥ 5) or
    /// `rope_theta` + `rope_scaling` (earlier files).
    static func rotaryPositions(_ json: HFConfig, headDim: Int) throws -> TransformerConfig.PositionKind {
        let file = json.url.path  // the full path, as HFConfigError gives: "config.json" alone names no model
        let parameters = try json.objectIfPresent("rope_parameters") ?? json.objectIfPresent("rope_scaling")
        let base = try parameters?.doubleIfPresent("rope_theta") ?? json.double("rope_theta", default: 10000)
        let kind = try parameters?.stringIfPresent("rope_type") ?? parameters?.stringIfPresent("type") ?? "default"
        switch kind {
        case "default":
            return .rotary(theta: base, inverseFrequencies: RotaryEmbedding.standard(headDim: headDim, base: base))
        case "llama3":
            guard let p = parameters else {
                return .rotary(theta: base, inverseFrequencies: RotaryEmbedding.standard(headDim: headDim, base: base))
            }
            return .rotary(theta: base, inverseFrequencies: RotaryEmbedding.llama3(
                headDim: headDim, base: base, factor: try p.double("factor"),
                lowFrequencyFactor: try p.double("low_freq_factor"),
                highFrequencyFactor: try p.double("high_freq_factor"),
                originalMaxPositions: try p.double("original_max_position_embeddings")))
        case "linear":
            let factor = try parameters?.double("factor") ?? 1
            return .rotary(theta: base, inverseFrequencies: RotaryEmbedding.standard(headDim: headDim, base: base).map { $0 / Float(factor) })
        default:
            throw ModelLoadError.invalidConfig(key: "rope_type", value: kind,
                                               expected: "default, linear or llama3", file: file)
        }
    }
}
