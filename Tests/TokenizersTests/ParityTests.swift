import Foundation
import ModelFormats
import Testing

@testable import Tokenizers

/// Token ids and decodes identical to HF tokenizers/transformers on the shared strings
/// (Fixtures/strings.json), for every supported loader and algorithm.
@Suite struct ParityTests {
    @Test func fixturesHaveAtLeast500Strings() {
        #expect(Fixtures.strings.count >= 500)
    }

    @Test func smolLM2FromGGUFMatchesTheSmolLM2Tokenizer() throws {
        let tokenizer = try FixtureTokenizers.smolLM2.get()
        let reference = try ReferenceCases("smollm2-ids.json")
        expectParity(tokenizer, reference, name: "smollm2")
    }

    /// transformers' GGUF loader does not know `pre = smollm` and uses the GPT-2 regex alone; with
    /// that pre-tokenizer we reproduce its ids too, including the strings where it differs.
    @Test func smolLM2WithGPT2RegexMatchesTransformersGGUFTokenizer() throws {
        let tokenizer = try FixtureTokenizers.smolLM2WithGPT2Regex.get()
        let reference = try ReferenceCases("smollm2-ids.json")
        var differing = 0
        for c in reference.cases {
            let expected = c.hfGGUFIDs ?? c.ids
            if c.hfGGUFIDs != nil { differing += 1 }
            #expect(
                tokenizer.encode(c.text, addSpecialTokens: false) == expected,
                "\(c.text.debugDescription)")
        }
        #expect(differing > 0)
    }

    @Test func smolLM2SpecialTokensAndTemplate() throws {
        let tokenizer = try FixtureTokenizers.smolLM2.get()
        let info = try Fixtures.json("smollm2-ids.json")["info"]
        #expect(tokenizer.vocabularySize == 49152)
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.unknownTokenID == 0)
        #expect(tokenizer.paddingTokenID == 2)
        #expect(!tokenizer.addsBOS)
        #expect(!tokenizer.addsEOS)
        #expect(tokenizer.id(of: "<|im_end|>") == 2)
        #expect(tokenizer.id(of: "<|im_start|>") == 1)
        #expect(tokenizer.tokenString(905) == "Ġworld")
        #expect(tokenizer.tokenString(49152) == nil)
        #expect(tokenizer.stopTokenIDs.isSuperset(of: [0, 2]))
        #expect(!tokenizer.stopTokenIDs.contains(1))
        #expect(tokenizer.specialTokenIDs.contains(1))
        let template = try #require(tokenizer.chatTemplate)
        #expect(template == info?["chat_template"]?.stringValue)
        #expect(template.contains("<|im_start|>"))
    }

    @Test func smolLM2MatchesReferenceLogitPrompts() throws {
        // The prompts of shared/reference/smollm2-135m-instruct-q4_1/logits.json, with their ids.
        let tokenizer = try FixtureTokenizers.smolLM2.get()
        #expect(tokenizer.encode("The capital of France is") == [504, 3575, 282, 4649, 314])
        #expect(
            tokenizer.encode("Toko Yasuda plays the") == [2068, 12713, 718, 292, 11037, 4566, 260])
    }

    @Test(arguments: ["bpe-digits", "bpe-llama3", "spm", "spm-legacy", "spm-split"])
    func tokenizerJSONMatchesHF(name: String) throws {
        let tokenizer = try FixtureTokenizers.json("\(name).tokenizer.json")
        let reference = try ReferenceCases("\(name)-ids.json")
        expectParity(tokenizer, reference, name: name)
    }

    @Test func sentencePieceFromGGUFMatchesTransformers() throws {
        let tokenizer = try FixtureTokenizers.spmGGUF.get()
        let reference = try ReferenceCases("spm-gguf-ids.json")
        expectParity(tokenizer, reference, name: "spm-gguf")
        #expect(tokenizer.addsBOS)
        #expect(reference.prefix == [1])
    }

    @Test func tokenizerJSONPostProcessorAddsBOS() throws {
        let tokenizer = try FixtureTokenizers.json("bpe-llama3.tokenizer.json")
        #expect(tokenizer.encode("hi").first == tokenizer.id(of: "<|begin_of_text|>"))
        #expect(tokenizer.addsBOS)
        // No config names an EOS; the end markers in the vocabulary are still stop tokens.
        #expect(tokenizer.eosTokenID == nil)
        #expect(tokenizer.stopTokenIDs == [1, 2])
    }

    @Test(arguments: SplitPattern.allCases.map(\.rawValue) + ["smollm"])
    func preTokenizerSplitsMatchOniguruma(kind: String) throws {
        let expected = try #require(
            try Fixtures.json("splits.json")[kind]?.arrayValue?.compactMap(\.intArrayValue))
        for (text, lengths) in zip(Fixtures.strings, expected) {
            let scalars = Array(text.unicodeScalars)
            var got: [Int] = []
            if let pattern = SplitPattern(rawValue: kind) {
                var start = 0
                for end in pattern.pieceEnds(scalars) {
                    got.append(end - start)
                    start = end
                }
            } else {
                var words: [TextPiece] = []
                PreTokenizer.smollm.split(TextPiece(scalars: scalars, isFirst: true), into: &words)
                got = words.map(\.scalars.count)
            }
            #expect(got == lengths, "\(kind): \(text.debugDescription)")
        }
    }
}

/// The same parity checks on a large random set made by
/// `make_tokenizer_fixtures.py --fuzz N --fuzz-out DIR` (not committed); run with
/// `IBKE_TOKENIZER_FUZZ_DIR=DIR swift test --filter TokenizerFuzzTests`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["IBKE_TOKENIZER_FUZZ_DIR"] != nil))
struct TokenizerFuzzTests {
    static var directory: URL {
        URL(
            fileURLWithPath: ProcessInfo.processInfo.environment["IBKE_TOKENIZER_FUZZ_DIR"]
                ?? "/nonexistent")
    }

    static func strings() throws -> [String] {
        let url = directory.appendingPathComponent("strings.json")
        let value = try JSONValue.parse(Data(contentsOf: url))
        return try #require(value.stringArrayValue)
    }

    /// `spm-gguf` is checked against the ids of `spm.tokenizer.json` (transformers gives both the
    /// same ids; the GGUF one adds BOS).
    @Test(arguments: [
        "smollm2", "smollm2-json", "bpe-digits", "bpe-llama3", "spm", "spm-legacy", "spm-split", "spm-gguf",
    ])
    func idsMatchHF(name: String) throws {
        let tokenizer: any Tokenizer
        switch name {
        case "smollm2": tokenizer = try FixtureTokenizers.smolLM2.get()
        case "spm-gguf": tokenizer = try FixtureTokenizers.spmGGUF.get()
        case "smollm2-json":
            tokenizer = try load(
                tokenizerJSON: Self.directory.appendingPathComponent("smollm2.tokenizer.json"))
        default: tokenizer = try FixtureTokenizers.json("\(name).tokenizer.json")
        }
        let file =
            ["spm-gguf": "spm-ids.json", "smollm2-json": "smollm2-ids.json"][name]
            ?? "\(name)-ids.json"
        var reference = try ReferenceCases(
            url: Self.directory.appendingPathComponent(file), strings: Self.strings())
        if name == "spm-gguf" {
            reference.prefix = [1]
            reference.withSpecial = []
        }
        let mismatched = expectParity(tokenizer, reference, name: name)
        #expect(mismatched.isEmpty)
    }

    @Test func splitsMatchOniguruma() throws {
        let all = try JSONValue.parse(
            Data(contentsOf: Self.directory.appendingPathComponent("splits.json")))
        let strings = try Self.strings()
        for kind in ["gpt2", "llama3", "qwen2", "smollm"] {
            let lists = all[kind]?.arrayValue?.compactMap { $0.intArrayValue }
            let expected = try #require(lists)
            var failures = 0
            for (text, lengths) in zip(strings, expected) {
                let scalars = Array(text.unicodeScalars)
                var words: [TextPiece] = []
                let stage: PreTokenizer = SplitPattern(rawValue: kind).map { .split($0) } ?? .smollm
                stage.split(TextPiece(scalars: scalars, isFirst: true), into: &words)
                if words.map(\.scalars.count) != lengths && failures < 20 {
                    failures += 1
                    Issue.record(
                        "\(kind): \(text.debugDescription) got \(words.map(\.scalars.count)) expected \(lengths)"
                    )
                }
            }
        }
    }
}
