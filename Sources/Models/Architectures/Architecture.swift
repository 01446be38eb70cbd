import Foundation
import ModelFormats

/// What a model family knows about its checkpoints: how their metadata maps to a
/// ``TransformerConfig``, how their tensors map to the canonical ``ModelWeights`` and back,
/// and which `config.json` keys describe a model of the family. The forward pass reads only
/// the config and the canonical weights, so a family that reuses the existing blocks needs
/// nothing else.
protocol ModelFamily: Sendable {
    /// The config from GGUF metadata (`<architecture>.embedding_length`, …).
    func config(gguf file: GGUFFile, architecture: Architecture) throws -> TransformerConfig
    /// The config from a Hugging Face `config.json`.
    func config(huggingFace json: HFConfig, architecture: Architecture) throws -> TransformerConfig
    /// Reads every tensor of a checkpoint into canonical form (fused q/k/v and gate/up, `[out, in]`).
    func weights(_ reader: inout CheckpointReader, config: TransformerConfig, naming: CheckpointNaming) throws -> ModelWeights
    /// The loader's inverse: every tensor a checkpoint in `naming` holds.
    func checkpointTensors(_ weights: ModelWeights, config: TransformerConfig, naming: CheckpointNaming) -> [CheckpointTensor]
    /// The `config.json` keys that describe `config` to transformers, in file order (without
    /// `architectures`, `model_type`, `vocab_size` and token ids, which every family shares).
    /// - Throws: ``ArchitectureError/notExpressible(_:)`` for a model transformers' class cannot hold.
    func huggingFaceConfig(_ config: TransformerConfig) throws -> [(key: String, value: JSONValue)]
}

/// A checkpoint architecture IBKE runs: its name in GGUF (`general.architecture`) and in
/// `config.json` (`model_type`, usually the same), its transformers class, and the family that
/// reads it.
/// Instances come only from ``Architecture/registry``; it encodes as its name.
public struct Architecture: Sendable, Hashable, Codable, CustomStringConvertible {
    public let name: String
    /// `config.json`'s `model_type`.
    public let modelType: String
    /// The class `config.json`'s `architectures` names (`LlamaForCausalLM`).
    public let huggingFaceClass: String
    let family: any ModelFamily

    init(name: String, modelType: String? = nil, huggingFaceClass: String, family: any ModelFamily) {
        self.name = name
        self.modelType = modelType ?? name
        self.huggingFaceClass = huggingFaceClass
        self.family = family
    }

    /// Every architecture IBKE runs, the one place that maps names to families.
    public static let registry: [Architecture] = [
        Architecture(name: "llama", huggingFaceClass: "LlamaForCausalLM", family: LlamaFamily.llama),
        Architecture(name: "mistral", huggingFaceClass: "MistralForCausalLM", family: LlamaFamily.llama),
        Architecture(name: "qwen2", huggingFaceClass: "Qwen2ForCausalLM", family: LlamaFamily.qwen2),
        Architecture(name: "gpt2", huggingFaceClass: "GPT2LMHeadModel", family: GPT2Family()),
        Architecture(name: "gemma3", modelType: "gemma3_text", huggingFaceClass: "Gemma3ForCausalLM", family: Gemma3Family()),
    ]

    /// The registered architecture of this GGUF / `model_type` name, or nil.
    public static func named(_ name: String) -> Architecture? { registry.first { $0.name == name } }

    /// The registered architecture of this name, or ``ModelLoadError/unsupportedArchitecture(_:file:supported:)``.
    public static func named(_ name: String, file: String) throws -> Architecture {
        guard let architecture = named(name) else {
            throw ModelLoadError.unsupportedArchitecture(name, file: file, supported: registry.map(\.name))
        }
        return architecture
    }

    /// The registered architecture of a `config.json`'s `model_type`, or
    /// ``ModelLoadError/unsupportedArchitecture(_:file:supported:)``.
    public static func withModelType(_ modelType: String, file: String) throws -> Architecture {
        guard let architecture = registry.first(where: { $0.modelType == modelType }) else {
            throw ModelLoadError.unsupportedArchitecture(modelType, file: file, supported: registry.map(\.modelType))
        }
        return architecture
    }

    public var description: String { name }

    /// The `config.json` keys that describe `config` to transformers (see ``ModelFamily``).
    public func huggingFaceConfig(_ config: TransformerConfig) throws -> [(key: String, value: JSONValue)] {
        try family.huggingFaceConfig(config)
    }

    public static func == (a: Architecture, b: Architecture) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    public init(from decoder: any Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let known = Self.named(name) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "unsupported architecture '\(name)'"))
        }
        self = known
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// A model that a family's checkpoint format cannot describe.
public enum ArchitectureError: Error, CustomStringConvertible {
    case notExpressible(String)

    public var description: String {
        switch self {
        case .notExpressible(let detail): detail
        }
    }
}
