import Foundation
import ModelFormats
import TensorCore

/// What the families' `config.json` readers share.
enum HuggingFaceConfig {
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
            return .rotary(
                theta: base,
                inverseFrequencies: RotaryEmbedding.llama3(
                    headDim: headDim, base: base, factor: try p.double("factor"),
                    lowFrequencyFactor: try p.double("low_freq_factor"),
                    highFrequencyFactor: try p.double("high_freq_factor"),
                    originalMaxPositions: try p.double("original_max_position_embeddings")))
        case "linear":
            let factor = try parameters?.double("factor") ?? 1
            return .rotary(
                theta: base, inverseFrequencies: RotaryEmbedding.standard(headDim: headDim, base: base).map { $0 / Float(factor) })
        default:
            throw ModelLoadError.invalidConfig(
                key: "rope_type", value: kind,
                expected: "default, linear or llama3", file: file)
        }
    }
}

extension HFConfig {
    /// A size: a whole number from 1 to ``TransformerConfig/dimensionLimit``.
    func size(_ key: String, default fallback: Int? = nil) throws -> Int {
        guard let v = try intIfPresent(key) else {
            if let fallback { return fallback }
            return try int(key)  // throws the missing-key error
        }
        guard v >= 1, v <= TransformerConfig.dimensionLimit else {
            // The full path, as HFConfigError gives: "config.json" alone names no model.
            throw ModelLoadError.invalidConfig(
                key: key, value: "\(v)", expected: "a size from 1 to \(TransformerConfig.dimensionLimit)",
                file: url.path)
        }
        return v
    }
}
