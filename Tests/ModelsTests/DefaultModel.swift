import Foundation
import ModelFormats
import Synchronization
import TestSupport
import Testing

@testable import Models

/// A checkpoint of `ibke model list` in IBKE's cache (`$IBKE_HOME/models`), if it has been fetched.
struct CachedModel: Sendable, CustomTestStringConvertible {
    var testDescription: String { file.rawValue }
    let file: CatalogFile
    /// The committed reference of `Scripts/golden/make_model_reference.py` (in Fixtures).
    let reference: String

    static let smolLM2 = CachedModel(file: .smolLM2, reference: "smollm2_reference")
    static let qwenCoder = CachedModel(file: .qwenCoder, reference: "qwen2.5-coder-0.5b_reference")
    static let gemma3 = CachedModel(file: .gemma3, reference: "gemma3-270m_reference")
    /// The catalogue's checkpoints beyond the default model that are in the cache.
    static var fetched: [CachedModel] { [qwenCoder, gemma3].filter(\.isAvailable) }

    /// The committed output of `Scripts/golden/make_gradient_reference.py` (in Fixtures).
    var gradientReference: String { reference.replacingOccurrences(of: "_reference", with: "_gradient_reference") }

    /// Loaded once per test process.
    static let loaded = Mutex<[String: LanguageModel]>([:])
    func load() throws -> LanguageModel {
        if let model = Self.loaded.withLock({ $0[file.rawValue] }) { return model }
        let model = try LanguageModel.load(path)
        Self.loaded.withLock { $0[file.rawValue] = model }
        return model
    }

    var path: URL { IBKEHome.model(file) }
    var isAvailable: Bool { IBKEHome.isFetched(file) }
}

/// The default model (SmolLM2-135M-Instruct Q4_1) in IBKE's cache, if it has been fetched.
enum DefaultModel {
    static var path: URL { CachedModel.smolLM2.path }

    static var isAvailable: Bool { FileManager.default.fileExists(atPath: path.path) }

    /// Loaded once per test process.
    static let transformer: Transformer? = {
        guard isAvailable, let file = try? GGUFFile(url: path) else { return nil }
        return try? ModelLoader.transformer(gguf: file)
    }()
}

/// transformers' logits and greedy tokens for a real checkpoint: the committed copy of
/// shared/reference/smollm2-135m-instruct-q4_1/logits.json, or a file of
/// Scripts/golden/make_model_reference.py.
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

    static func load(_ name: String = "smollm2_reference") throws -> ReferenceLogits {
        let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures")!
        return try JSONDecoder().decode(ReferenceLogits.self, from: Data(contentsOf: url))
    }
}
