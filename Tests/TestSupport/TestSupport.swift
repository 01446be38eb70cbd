import Foundation

// What every test target shares: where fetched checkpoints and the committed model fixtures are,
// and temporary directories. Foundation only, so that any test target can depend on it.

/// IBKE's cache as the tests find it: `$IBKE_HOME`, default `~/.cache/ibke` (as `ibke` itself).
public enum IBKEHome {
    public static var url: URL {
        ProcessInfo.processInfo.environment["IBKE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/ibke")
    }

    /// A checkpoint fetched by `ibke model fetch` (it may be missing: see ``isFetched(_:)``).
    public static func model(_ file: CatalogFile) -> URL {
        url.appendingPathComponent("models/\(file.rawValue)")
    }

    public static func isFetched(_ file: CatalogFile) -> Bool {
        FileManager.default.fileExists(atPath: model(file).path)
    }
}

/// The file names of the checkpoints of `ibke model list`.
public enum CatalogFile: String, Sendable, CaseIterable {
    /// The default model.
    case smolLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
    case qwenCoder = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
    case gemma3 = "gemma-3-270m.Q4_K_M.gguf"
}

/// The committed model fixtures (`Tests/ModelsTests/Fixtures`), read in place by every target.
public enum ModelFixtures {
    public static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")

    /// A tiny checkpoint folder (`tiny-llama`, `tiny-qwen2`, …) or file.
    public static func model(_ name: String) -> URL { folder.appendingPathComponent(name) }
}

/// A fresh temporary directory, removed with everything in it when the object goes away.
/// `@unchecked Sendable`: `url` is immutable; the directory's contents are the test's business.
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// The URL of `name` inside the directory.
    public func appending(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Writes `bytes` to a file called `name` in the directory and returns its URL.
    @discardableResult
    public func write(_ bytes: [UInt8], to name: String) throws -> URL {
        let file = appending(name)
        try Data(bytes).write(to: file)
        return file
    }
}

/// Runs `body` in a fresh temporary directory that is removed afterwards.
public func withTemporaryDirectory<T>(_ body: (URL) throws -> T) throws -> T {
    let directory = try TemporaryDirectory()
    return try body(directory.url)
}
