import Foundation
import ModelFormats
import Models

/// Writes a loaded model, edits included, as a checkpoint that other tools (and IBKE) load: a
/// GGUF file or a Hugging Face folder. The source checkpoint is only read.
public enum ModelExport {
    /// The checkpoint format of an export.
    public enum Format: String, Sendable {
        case gguf
        case huggingFace = "hf"

        /// GGUF for a path ending in `.gguf`, a Hugging Face folder otherwise.
        public init(destination: URL) {
            self = destination.pathExtension.lowercased() == "gguf" ? .gguf : .huggingFace
        }
    }

    /// How rewritten tensors are stored.
    public enum Precision: String, Sendable, CaseIterable {
        case f32, f16
        /// Each rewritten tensor in its source tensor's type (GGUF only): block formats are
        /// quantized again (``Quantize/formats``), float ones stay float.
        case source
    }

    /// What an export wrote.
    public struct Result: Sendable {
        public let format: Format
        public let url: URL
        /// The tensors written from the model's weights, in file order; in a GGUF export these
        /// are the edited ones, every other tensor being the source's bytes.
        public let rewrittenTensors: [String]
    }

    /// Writes `model`'s current weights to `destination` (format by ``Format/init(destination:)``).
    ///
    /// A GGUF export copies the source GGUF's metadata and every tensor whose values the model
    /// still holds unchanged byte for byte, quantization included, and stores the others in
    /// `precision`. A Hugging Face export writes every weight in `precision`, with the source
    /// folder's config and tokenizer files, or ones converted from the GGUF metadata.
    ///
    /// - Parameter overwrite: replace an existing file or non-empty folder (never the source).
    /// - Throws: ``ExportError`` for a destination that exists or is the source and for what
    ///   cannot be converted; file-format errors for a failed write, which leaves the
    ///   destination as it was.
    @discardableResult
    public static func write(
        _ model: LanguageModel, to destination: URL, precision: Precision = .f32, overwrite: Bool = false
    ) throws -> Result {
        let format = Format(destination: destination)
        try checkDestination(destination, source: model.url, overwrite: overwrite)
        if precision == .source && format == .huggingFace {
            throw ExportError.unsupported(
                file: destination.path,
                detail: "a Hugging Face folder stores float tensors; the source's block types are kept only in a GGUF export")
        }
        let rewritten: [String]
        switch format {
        case .gguf:
            rewritten = try writeGGUF(model, to: destination, precision: precision)
        case .huggingFace:
            var names: [String] = []
            try AtomicFolder.write(to: destination) { folder in
                names = try writeHuggingFace(model, into: folder, precision: precision)
            }
            rewritten = names
        }
        return Result(format: format, url: destination, rewrittenTensors: rewritten)
    }

    /// What marks a file or folder as an earlier export, the only thing `overwrite` replaces: a
    /// GGUF string of this key, or a Hugging Face folder holding ``manifestName``.
    static let exportMarkerKey = "ibke.export"
    static let manifestName = "ibke-export.json"

    /// Whether `url` is an export this code wrote (``exportMarkerKey``).
    static func isEarlierExport(_ url: URL, format: Format) -> Bool {
        switch format {
        case .gguf: (try? GGUFFile(url: url))?.string(exportMarkerKey) != nil
        case .huggingFace: FileManager.default.fileExists(atPath: url.appendingPathComponent(manifestName).path)
        }
    }

    /// Throws the ``ExportError`` that ``write(_:to:precision:overwrite:)`` would for this
    /// destination, so that a caller can refuse before loading and editing a model.
    ///
    /// `overwrite` replaces only an earlier export (``isEarlierExport(_:format:)``), never the
    /// source or a folder that holds it, nor anything else a user keeps there.
    public static func checkDestination(_ destination: URL, source: URL, overwrite: Bool) throws {
        let format = Format(destination: destination)
        var isFolder: ObjCBool = false
        if format == .gguf && FileManager.default.fileExists(atPath: source.path, isDirectory: &isFolder) && isFolder.boolValue {
            throw ExportError.notFromGGUF(source)
        }
        try checkPlace(destination, format: format, source: source, overwrite: overwrite)
    }

    /// The checks of ``checkDestination(_:source:overwrite:)`` on the place alone: a file
    /// (`.gguf`) or a folder that is not the source, holds no source, and exists only as an
    /// earlier export that `overwrite` allows to replace.
    static func checkPlace(_ destination: URL, format: Format, source: URL, overwrite: Bool) throws {
        let path = destination.standardizedFileURL.resolvingSymlinksInPath().path
        let sourcePath = source.standardizedFileURL.resolvingSymlinksInPath().path
        guard path != sourcePath else { throw ExportError.destinationIsSource(path: destination.path) }
        guard !sourcePath.hasPrefix(path.hasSuffix("/") ? path : path + "/") else {
            throw ExportError.destinationHoldsSource(path: destination.path, source: source.path)
        }
        var isFolder: ObjCBool = false
        let parent = destination.deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: parent.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw ExportError.noFolder(path: destination.path, folder: parent.path)
        }
        guard FileManager.default.fileExists(atPath: destination.path, isDirectory: &isFolder) else { return }
        switch (format, isFolder.boolValue) {
        case (.gguf, true):
            throw ExportError.unsupported(file: destination.path, detail: "is a folder; a GGUF export is a file")
        case (.huggingFace, false):
            throw ExportError.unsupported(
                file: destination.path, detail: "is a file; a Hugging Face export is a folder (a path ending in .gguf exports GGUF)")
        case (.gguf, false):
            if !overwrite { throw ExportError.destinationExists(path: destination.path, detail: "exists") }
            guard isEarlierExport(destination, format: .gguf) else { throw ExportError.notAnExport(path: destination.path) }
        case (.huggingFace, true):
            let contents = try FileManager.default.contentsOfDirectory(atPath: destination.path)
            guard !contents.isEmpty else { return }
            if !overwrite { throw ExportError.destinationExists(path: destination.path, detail: "is a folder that is not empty") }
            guard isEarlierExport(destination, format: .huggingFace) else { throw ExportError.notAnExport(path: destination.path) }
        }
    }
}

/// Why a model cannot be exported where or as asked.
public enum ExportError: Error, CustomStringConvertible, Equatable {
    case destinationExists(path: String, detail: String)
    case destinationIsSource(path: String)
    case destinationHoldsSource(path: String, source: String)
    case notAnExport(path: String)
    case noFolder(path: String, folder: String)
    case unsupported(file: String, detail: String)

    /// A model loaded from a Hugging Face folder asked for as GGUF.
    static func notFromGGUF(_ source: URL) -> ExportError {
        .unsupported(
            file: source.lastPathComponent,
            detail: "a Hugging Face model can only be exported as a Hugging Face folder (an output path not ending in .gguf)")
    }

    public var description: String {
        switch self {
        case .destinationExists(let path, let detail):
            "\(path) \(detail); replacing it must be asked for"
        case .destinationIsSource(let path):
            "\(path) is the source model, which is never overwritten"
        case .destinationHoldsSource(let path, let source):
            "\(path) holds the source model \(source), which is never overwritten; choose another output path"
        case .notAnExport(let path):
            "\(path) exists and is not an earlier ibke export; it is never replaced, choose another output path"
        case .noFolder(let path, let folder):
            "\(path): there is no folder \(folder) to write it in"
        case .unsupported(let file, let detail):
            "\(file): \(detail)"
        }
    }
}
