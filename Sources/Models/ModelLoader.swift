import Foundation
import ModelFormats
import TensorCore

/// Builds a ``Transformer`` from a checkpoint: a GGUF file or a Hugging Face folder.
public enum ModelLoader {
    /// Architectures IBKE runs, by their GGUF / `model_type` names.
    public static let supportedArchitectures = ["llama", "mistral", "qwen2", "gpt2"]

    /// Loads the transformer of a GGUF file.
    public static func transformer(gguf file: GGUFFile) throws -> Transformer {
        let fileName = file.url.lastPathComponent
        guard let architecture = file.architecture else {
            throw ModelLoadError.missingConfig(key: "general.architecture", file: fileName)
        }
        var reader = CheckpointReader(file)
        let config: TransformerConfig
        let weights: ModelWeights
        switch architecture {
        case "llama", "mistral", "qwen2":
            config = try LlamaFamily.config(gguf: file, architecture: architecture)
            try config.validate(tensorElements: elementCount(file), file: fileName)
            weights = try LlamaFamily.weights(&reader, config: config, names: .gguf,
                                              unpermuteQK: LlamaFamily.ggufPermutesQK(architecture: architecture))
            if file.shape(of: "rope_freqs.weight") != nil { reader.consume("rope_freqs.weight") }
        case "gpt2":
            config = try GPT2.config(gguf: file)
            try config.validate(tensorElements: elementCount(file), file: fileName)
            weights = try GPT2.weights(gguf: &reader, config: config)
        default:
            throw ModelLoadError.unsupportedArchitecture(architecture, file: fileName, supported: supportedArchitectures)
        }
        try reader.finish()
        return Transformer(config: config, weights: weights)
    }

    /// The weights a checkpoint holds in all, which bound the dimensions it may declare.
    private static func elementCount(_ source: any TensorSource) -> Int {
        source.tensorNames.reduce(0) { total, name in
            let count = (source.shape(of: name) ?? []).reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
            return total.addingReportingOverflow(count).overflow ? Int.max : total + count
        }
    }

    /// Loads the transformer of a Hugging Face folder (`config.json` + safetensors); pass the
    /// folder's checkpoint when the caller has opened it already.
    public static func transformer(
        huggingFace folder: URL, checkpoint: SafetensorsCheckpoint? = nil
    ) throws -> Transformer {
        let configURL = folder.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw ModelLoadError.notAModel(file: folder.path, detail: "no config.json in the folder")
        }
        let json = try HFConfig(contentsOf: configURL)
        let modelType = try json.string("model_type")
        let config = try HuggingFaceConfig.transformerConfig(json, modelType: modelType)
        let source = try checkpoint ?? SafetensorsCheckpoint(url: folder)
        try config.validate(tensorElements: elementCount(source), file: configURL.path)
        var reader = CheckpointReader(source)
        let weights: ModelWeights
        if modelType == "gpt2" {
            weights = try GPT2.weights(huggingFace: &reader, config: config)
        } else {
            weights = try LlamaFamily.weights(&reader, config: config, names: .huggingFace, unpermuteQK: false)
        }
        // Non-persistent buffers that older exports still carry.
        try reader.finish(ignoring: { $0.hasSuffix(".attn.bias") || $0.hasSuffix(".attn.masked_bias") || $0.hasSuffix("rotary_emb.inv_freq") })
        return Transformer(config: config, weights: weights)
    }
}
