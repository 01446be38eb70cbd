import ArgumentParser
import Foundation
import ModelFormats
import Models
import TensorCore

/// `--model` and `--threads`, shared by every command that runs a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "A GGUF file or a Hugging Face folder (config.json, *.safetensors, tokenizer.json).",
        discussion: "Default: SmolLM2-135M-Instruct (Q4_1) from $IBKE_HOME/models (fetch it with `ibke model fetch`).",
        valueName: "path"))
    var model: String?

    @Option(help: "Threads for matrix products and parallel loops (default: all cores).")
    var threads: Int?

    /// The checkpoint path: `--model`, or the default model, which must have been fetched.
    func modelURL(_ path: String? = nil) throws -> URL {
        if let model = path ?? model { return URL(fileURLWithPath: model) }
        let url = DefaultModel.fileURL
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CLIError("the default model is not in \(url.deletingLastPathComponent().path); fetch it with `ibke model fetch` (needs python3 with pip) or pass --model PATH")
        }
        return url
    }

    /// Loads `path` (when given) or the `--model` / default model.
    func load(_ path: String? = nil) throws -> LanguageModel {
        if let threads { ComputeThreads.set(threads) }
        let url = try modelURL(path)
        let start = DispatchTime.now().uptimeNanoseconds
        let loaded = try LanguageModel.load(url)
        log(String(format: "loaded %@ (%@, %d layers) in %.2f s", url.lastPathComponent, loaded.config.architecture,
                   loaded.config.layerCount, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
        return loaded
    }
}

/// A user-facing failure of a command; printed as one line, exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes a line to standard error (progress and logs; results go to standard output).
func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Writes to standard output without a newline and flushes (streamed generation).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// JSON text of an encodable value, keys sorted.
func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
