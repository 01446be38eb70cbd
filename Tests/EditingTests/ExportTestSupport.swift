import Foundation
import Models
import Testing

@testable import Editing

/// What the export tests share: the edit they apply, logit comparison and scratch folders.
enum ExportTestSupport {
    /// Prompts of ids every tiny model has (vocabularies of 300).
    static let tinyPrompts: [[Int]] = [[0, 5, 9, 3, 200, 17, 64], [0, 42, 7, 7, 120, 255]]

    /// Random updates of ffn_down, q and k (llama.cpp's permutation), v, and gate and up (the
    /// fused matrix), dense and low-rank: the matrices editors touch and every layout the
    /// exporters undo. Matrices a model lacks (GPT-2's gate) are left out.
    static func edit(_ model: LanguageModel, layers: [Int] = [0, 1]) throws -> WeightDelta {
        let kinds: [ParameterID.Kind] = [
            .feedForwardDown, .attentionQuery, .attentionKey, .attentionValue,
            .feedForwardGate, .feedForwardUp,
        ]
        var entries: [WeightDelta.Entry] = []
        for (i, kind) in kinds.enumerated() {
            let id = ParameterID(layer: layers[i % layers.count], kind)
            guard model.transformer.weights.tensor(id, config: model.config) != nil else { continue }
            entries.append(TestModels.randomEntry(model, id, seed: UInt64(10 + i), lowRank: i % 2 == 1))
        }
        let delta = WeightDelta(entries: entries)
        try model.transformer.apply(delta)
        return delta
    }

    /// The largest logit difference between two models on `prompts`, scaled by `max(1, |b|)`.
    static func worstDifference(_ a: LanguageModel, _ b: LanguageModel, prompts: [[Int]] = tinyPrompts) throws -> Float {
        var worst: Float = 0
        for (x, y) in zip(try a.logits(prompts), try b.logits(prompts)) {
            for i in 0..<x.count { worst = max(worst, abs(x[i] - y[i]) / max(1, abs(y[i]))) }
        }
        return worst
    }

    /// A fresh folder, removed after `body`.
    static func withFolder<T>(_ body: (URL) throws -> T) throws -> T {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        return try body(folder)
    }

    /// Texts whose encodings an exported tokenizer must reproduce (special tokens, digits,
    /// whitespace runs, non-ASCII).
    static let texts = [
        "The capital of Italy is Rome.", "Numbers like 12345 and 2024", "She said: \"It's\"\n\n  x",
        "<|begin_of_text|>Hello<|end_of_text|>", "<|im_start|>user\nHi<|im_end|>", "ünïcödé 🚀  x  1",
    ]

    /// Checks that two tokenizers encode and decode `texts` alike and agree on special tokens.
    static func expectSameTokenizer(_ a: LanguageModel, _ b: LanguageModel, sourceLocation: SourceLocation = #_sourceLocation) {
        for text in texts {
            let ids = b.encode(text)
            #expect(a.encode(text) == ids, "\(text.debugDescription)", sourceLocation: sourceLocation)
            #expect(
                a.tokenizer.decode(ids, skipSpecialTokens: false) == b.tokenizer.decode(ids, skipSpecialTokens: false),
                sourceLocation: sourceLocation)
        }
        #expect(
            a.tokenizer.bosTokenID == b.tokenizer.bosTokenID && a.tokenizer.eosTokenID == b.tokenizer.eosTokenID,
            sourceLocation: sourceLocation)
        #expect(
            a.tokenizer.addsBOS == b.tokenizer.addsBOS && a.tokenizer.specialTokenIDs == b.tokenizer.specialTokenIDs,
            sourceLocation: sourceLocation)
        #expect(a.tokenizer.chatTemplate == b.tokenizer.chatTemplate, sourceLocation: sourceLocation)
        #expect(a.tokenizer.vocabularySize == b.tokenizer.vocabularySize, sourceLocation: sourceLocation)
    }
}
