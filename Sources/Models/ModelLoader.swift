import Foundation
import ModelFormats
import TensorCore

/// Builds a ``Transformer`` from a checkpoint: a GGUF file or a Hugging Face folder.
public enum ModelLoader {
    /// Loads the transformer of a GGUF file, its matrices in `precision`.
    public static func transformer(gguf file: GGUFFile, precision: WeightPrecision = .float32) throws -> Transformer {
        let fileName = file.url.lastPathComponent
        if file.string("general.type") == "adapter" {
            throw ModelLoadError.notAModel(
                file: fileName,
                detail: "it is \(file.string("adapter.type").map { "a \($0)" } ?? "an") adapter for a model, not a model "
                    + "(load it on its base model, e.g. llama.cpp's --lora)")
        }
        guard let name = file.architecture else {
            throw ModelLoadError.missingConfig(key: "general.architecture", file: fileName)
        }
        let architecture = try Architecture.named(name, file: fileName)
        let config = try architecture.family.config(gguf: file, architecture: architecture)
        try config.validate(tensorElements: elementCount(file), file: fileName)
        var reader = CheckpointReader(file, precision: precision)
        let weights = try architecture.family.weights(&reader, config: config, naming: .gguf)
        try reader.finish()
        return Transformer(config: config, weights: weights, precision: precision)
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
        let architecture = try Architecture.withModelType(json.string("model_type"), file: configURL.path)
        let config = try architecture.family.config(huggingFace: json, architecture: architecture)
        let source = try checkpoint ?? SafetensorsCheckpoint(url: folder)
        try config.validate(tensorElements: elementCount(source), file: configURL.path)
        var reader = CheckpointReader(source)
        let weights = try architecture.family.weights(&reader, config: config, naming: .huggingFace)
        // Non-persistent buffers that older exports still carry.
        try reader.finish(ignoring: {
            $0.hasSuffix(".attn.bias") || $0.hasSuffix(".attn.masked_bias") || $0.hasSuffix("rotary_emb.inv_freq")
        })
        return Transformer(config: config, weights: weights)
    }
}
