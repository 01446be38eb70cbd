import Foundation
import ModelFormats
import Testing

@testable import Tokenizers

/// A tokenizer written as Hugging Face files loads back and encodes and decodes as the original.
@Suite struct TokenizerExportTests {
    /// Writes `tokenizer`'s files to a temporary folder and loads them back.
    static func roundTrip(_ tokenizer: BPETokenizer) throws -> any Tokenizer {
        let files = try tokenizer.huggingFaceFiles(source: "test", modelMaxLength: 128)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let json = folder.appendingPathComponent("tokenizer.json")
        let config = folder.appendingPathComponent("tokenizer_config.json")
        try Data(files.tokenizer.serialized(indent: 0).utf8).write(to: json)
        try Data(files.config.serialized(indent: 0).utf8).write(to: config)
        return try load(tokenizerJSON: json, configJSON: config)
    }

    /// The SentencePiece vocabulary from GGUF metadata (scores, byte fallback, BOS): its merges
    /// in score order reproduce every fixture string's ids and text, BOS included.
    @Test func sentencePieceFromGGUFWritesAnEquivalentTokenizerJSON() throws {
        let original = try #require(try FixtureTokenizers.spmGGUF.get() as? BPETokenizer)
        let reloaded = try Self.roundTrip(original)
        for text in Fixtures.strings {
            let ids = original.encode(text)
            #expect(reloaded.encode(text) == ids, "\(text.debugDescription)")
            #expect(sameScalars(reloaded.decode(ids, skipSpecialTokens: false), original.decode(ids, skipSpecialTokens: false)))
        }
        #expect(reloaded.addsBOS && reloaded.bosTokenID == original.bosTokenID)
        #expect(reloaded.vocabularySize == original.vocabularySize)
    }
}
