import Foundation
import ModelFormats
import Models
import Tokenizers

extension ModelExport {
    /// Files of a Hugging Face folder that describe the model rather than hold weights, copied
    /// byte for byte from a Hugging Face source.
    static let huggingFaceSideFiles = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "chat_template.jinja",
    ]

    /// Writes `model.safetensors` with every weight and the config and tokenizer files into
    /// `folder` (a fresh temporary folder).
    ///
    /// - Returns: the tensor names written.
    static func writeHuggingFace(_ model: LanguageModel, into folder: URL, precision: Precision) throws -> [String] {
        let tensors = model.transformer.checkpointTensors(.huggingFace)
        var entries: [SafetensorsWriter.Entry] = []
        func add(_ name: String, _ shape: [Int], _ values: [Float]) {
            entries.append(
                precision == .f16
                    ? .float16(name: name, shape: shape, floats: values)
                    : .init(name: name, shape: shape, floats: values))
        }
        switch model.format {
        case .huggingFace:
            // The source's names (with or without GPT-2's `transformer.` prefix), and tensors the
            // model does not use (a tied head, old attention-mask buffers) as they are.
            let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for name in model.source.tensorNames {
                if let tensor = byName[name] ?? byName["transformer." + name] {
                    add(name, tensor.shape, tensor.values())
                } else {
                    let values = try readFloats(model.source, name)
                    add(name, model.source.shape(of: name) ?? [values.count], values)
                }
            }
            for file in huggingFaceSideFiles {
                let url = model.url.appendingPathComponent(file)
                if FileManager.default.fileExists(atPath: url.path) {
                    try FileManager.default.copyItem(at: url, to: folder.appendingPathComponent(file))
                }
            }
        case .gguf:
            for tensor in tensors { add(tensor.name, tensor.shape, tensor.values()) }
            try writeConvertedSideFiles(model, into: folder, precision: precision)
        }
        try SafetensorsWriter.write(
            tensors: entries, metadata: ["format": "pt"],
            to: folder.appendingPathComponent(SafetensorsCheckpoint.singleFileName))
        let manifest: JSONValue = .object(["format": .string(exportMarkerKey), "source": .string(model.url.lastPathComponent)])
        try Data((manifest.serialized(indent: 2) + "\n").utf8).write(to: folder.appendingPathComponent(manifestName))
        return entries.map(\.name)
    }

    /// config.json, tokenizer.json and tokenizer_config.json from a GGUF's metadata.
    private static func writeConvertedSideFiles(_ model: LanguageModel, into folder: URL, precision: Precision) throws {
        let file = model.url.lastPathComponent
        guard let tokenizer = model.tokenizer as? BPETokenizer else {
            throw ExportError.unsupported(file: file, detail: "its tokenizer cannot be written as tokenizer.json")
        }
        let tokenizerFiles = try tokenizer.huggingFaceFiles(source: file, modelMaxLength: model.config.contextLength)
        let config = try HuggingFaceConfigWriter.config(model, precision: precision)
        for (name, json) in [
            ("config.json", config), ("tokenizer.json", tokenizerFiles.tokenizer),
            ("tokenizer_config.json", tokenizerFiles.config),
        ] {
            try Data((json.serialized(indent: 2) + "\n").utf8).write(to: folder.appendingPathComponent(name))
        }
    }

    private static func readFloats(_ source: any TensorSource, _ name: String) throws -> [Float] {
        let count = source.shape(of: name)?.reduce(1, *) ?? 0
        return try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            try source.readFloats(name, into: buffer)
            initialized = count
        }
    }
}
