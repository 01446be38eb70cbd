import Foundation
import ModelFormats
@testable import Models

/// The default model (SmolLM2-135M-Instruct Q4_1) in IBKE's cache, if it has been fetched.
enum DefaultModel {
    static var path: URL {
        let home = ProcessInfo.processInfo.environment["IBKE_HOME"]
            .map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/ibke")
        return home.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    static var isAvailable: Bool { FileManager.default.fileExists(atPath: path.path) }

    /// Loaded once per test process.
    static let transformer: Transformer? = {
        guard isAvailable, let file = try? GGUFFile(url: path) else { return nil }
        return try? ModelLoader.transformer(gguf: file)
    }()
}

/// The committed copy of shared/reference/smollm2-135m-instruct-q4_1/logits.json.
struct ReferenceLogits: Decodable {
    struct Position: Decodable {
        let top5_ids: [Int]
        let top5_logits: [Float]
        let logsumexp: Float
    }
    struct Prompt: Decodable {
        let text: String
        let token_ids: [Int]
        let positions: [Position]
        let greedy_continuation_ids: [Int]
        let greedy_continuation_text: String
    }
    let prompts: [Prompt]

    static func load() throws -> ReferenceLogits {
        let url = Bundle.module.url(forResource: "smollm2_reference", withExtension: "json", subdirectory: "Fixtures")!
        return try JSONDecoder().decode(ReferenceLogits.self, from: Data(contentsOf: url))
    }
}
