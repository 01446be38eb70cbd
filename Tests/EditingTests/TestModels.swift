import Foundation
import Models

/// Models the editing tests run on: ModelsTests' tiny checkpoints (read in place) and the
/// default model when it has been fetched.
enum TestModels {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")

    /// A fresh copy of the tiny Llama (each test edits its own).
    static func tinyLlama() throws -> LanguageModel {
        try LanguageModel.load(fixtures.appendingPathComponent("tiny-llama"))
    }

    static var defaultModelURL: URL {
        let home = ProcessInfo.processInfo.environment["IBKE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/ibke")
        return home.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    static var hasDefaultModel: Bool { FileManager.default.fileExists(atPath: defaultModelURL.path) }

    static func defaultModel() throws -> LanguageModel { try LanguageModel.load(defaultModelURL) }
}
