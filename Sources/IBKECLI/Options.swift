import ArgumentParser
import Foundation
import ModelFormats
import Models

/// `--model`: which checkpoint to use (the default model when absent).
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A GGUF file or a Hugging Face folder (default: SmolLM2-135M-Instruct from the cache).")
    var model: String?

    func loadTransformer() throws -> Transformer {
        let url = URL(fileURLWithPath: model ?? defaultModelPath())
        return try ModelLoader.transformer(gguf: GGUFFile(url: url))
    }
}

func defaultModelPath() -> String {
    let home = ProcessInfo.processInfo.environment["IBKE_HOME"]
        ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/ibke").path
    return home + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
}
