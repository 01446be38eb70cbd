import Foundation
import ModelFormats
import Testing

@testable import Tokenizers

@Suite struct StreamingDetokenizerTests {
    static func tokenizer(_ name: String) throws -> any Tokenizer {
        switch name {
        case "smollm2": try FixtureTokenizers.smolLM2.get()
        case "spm-gguf": try FixtureTokenizers.spmGGUF.get()
        default: try FixtureTokenizers.json(name)
        }
    }

    @Test(arguments: ["smollm2", "spm-gguf", "spm.tokenizer.json"])
    func streamedTextEqualsDecodedText(name: String) throws {
        let tokenizer = try Self.tokenizer(name)
        for skip in [false, true] {
            for text in Fixtures.strings {
                let ids = tokenizer.encode(text)
                var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: skip)
                var chunks: [String] = ids.map { stream.append($0) }
                chunks.append(stream.finish())
                let expected = tokenizer.decode(ids, skipSpecialTokens: skip)
                let streamed = chunks.joined()
                #expect(sameScalars(streamed, expected), "\(name): \(text.debugDescription)")
                if !expected.unicodeScalars.contains("\u{FFFD}") {
                    #expect(
                        !streamed.unicodeScalars.contains("\u{FFFD}"),
                        "\(name): \(text.debugDescription)")
                }
            }
        }
    }

    @Test func byteFallbackTokensWaitForTheWholeCharacter() throws {
        let tokenizer = try FixtureTokenizers.spmGGUF.get()
        let ids = tokenizer.encode("a 🦜 b", addSpecialTokens: false)
        // 🦜 is not in the small vocabulary: four <0xNN> tokens.
        let byteTokens = ids.compactMap { tokenizer.tokenString($0) }.filter { $0.hasPrefix("<0x") }
        #expect(byteTokens.count == 4)
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        let chunks = ids.map { stream.append($0) } + [stream.finish()]
        #expect(chunks.joined() == "a 🦜 b")
        #expect(chunks.contains(" 🦜") || chunks.contains("🦜"))
        #expect(chunks.filter(\.isEmpty).count >= 3)
    }

    @Test func unfinishedCharacterIsFlushedAsReplacement() throws {
        let tokenizer = try FixtureTokenizers.spmGGUF.get()
        let partial = try #require(tokenizer.id(of: "<0xF0>"))
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        #expect(stream.append(partial) == "")
        #expect(stream.finish() == "\u{FFFD}")
    }
}

@Suite struct TokenizerErrorTests {
    static func smolMetadata() throws -> [String: GGUFValue] {
        try Fixtures.ggufMetadata("smollm2-gguf-metadata.json")
    }

    @Test func missingTokensNamesFileAndKey() throws {
        var metadata = try Self.smolMetadata()
        metadata["tokenizer.ggml.tokens"] = nil
        #expect {
            try load(ggufMetadata: metadata, source: "model.gguf")
        } throws: { error in
            "\(error)" == "model.gguf: missing tokenizer.ggml.tokens"
        }
    }

    @Test func ggufErrorsNameTheKey() throws {
        let base = try Self.smolMetadata()
        let cases: [(String, GGUFValue?, String)] = [
            ("tokenizer.ggml.model", nil, "model.gguf: missing tokenizer.ggml.model"),
            (
                "tokenizer.ggml.model", .string("bert"),
                "model.gguf: unsupported tokenizer.ggml.model \"bert\""
            ),
            (
                "tokenizer.ggml.pre", .string("mystery"),
                "model.gguf: unsupported tokenizer.ggml.pre \"mystery\""
            ),
            ("tokenizer.ggml.merges", nil, "model.gguf: missing tokenizer.ggml.merges"),
            (
                "tokenizer.ggml.merges", .array([.string("Ġ t"), .string("nosuch token")]),
                "model.gguf: invalid tokenizer.ggml.merges: merge 1 \"nosuch token\" uses a token not in the vocabulary"
            ),
            (
                "tokenizer.ggml.bos_token_id", .uint32(60000),
                "model.gguf: invalid tokenizer.ggml.bos_token_id: id 60000 is outside the vocabulary of 49152 tokens"
            ),
            (
                "tokenizer.ggml.token_type", .array([.int32(1)]),
                "model.gguf: invalid tokenizer.ggml.token_type: 1 entries for 49152 tokens"
            ),
            (
                "tokenizer.ggml.tokens", .string("x"),
                "model.gguf: invalid tokenizer.ggml.tokens: expected an array of strings"
            ),
        ]
        for (key, value, message) in cases {
            var metadata = base
            metadata[key] = value
            #expect(throws: TokenizerError.self) {
                try load(ggufMetadata: metadata, source: "model.gguf")
            }
            do {
                _ = try load(ggufMetadata: metadata, source: "model.gguf")
            } catch {
                #expect("\(error)" == message)
            }
        }
    }

    @Test func sentencePieceWithoutScoresThrows() throws {
        var metadata = try Fixtures.ggufMetadata("spm-gguf-metadata.json")
        metadata["tokenizer.ggml.scores"] = nil
        #expect(
            throws: TokenizerError.missingField(source: "spm.gguf", field: "tokenizer.ggml.scores")
        ) {
            try load(ggufMetadata: metadata, source: "spm.gguf")
        }
    }

    @Test func tokenizerJSONErrorsNameFileAndField() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ibke-tokenizer-errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(String, String)] = [
            (
                #"{"model": {"type": "Unigram", "vocab": []}}"#,
                #"tokenizer.json: unsupported model.type "Unigram""#
            ),
            (#"{"added_tokens": []}"#, "tokenizer.json: missing model"),
            (#"{"model": {"type": "BPE", "merges": []}}"#, "tokenizer.json: missing model.vocab"),
            (
                #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#,
                #"tokenizer.json: invalid model.merges: entry 0 ("a", "b") uses a token not in the vocabulary"#
            ),
            (
                #"{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}, "model": {"vocab": {}, "merges": []}}"#,
                #"tokenizer.json: unsupported pre_tokenizer.pattern \w+"#
            ),
            (
                #"{"normalizer": {"type": "Sequence", "normalizers": [{"type": "Precompiled"}]}, "model": {"vocab": {}, "merges": []}}"#,
                #"tokenizer.json: unsupported normalizer.normalizers[0].type "Precompiled""#
            ),
            (
                #"{"model": "#,
                "tokenizer.json: cannot read: invalid JSON: unexpected end of input at byte 10"
            ),
        ]
        let url = directory.appendingPathComponent("tokenizer.json")
        for (json, message) in cases {
            try Data(json.utf8).write(to: url)
            do {
                _ = try load(tokenizerJSON: url)
                Issue.record("no error for \(json)")
            } catch {
                #expect("\(error)" == message)
            }
        }
        #expect {
            try load(tokenizerJSON: directory.appendingPathComponent("absent.json"))
        } throws: { error in
            "\(error)".hasPrefix("absent.json: cannot read:")
        }
    }

    @Test func configSuppliesSpecialTokensFlagsAndTemplate() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ibke-tokenizer-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        try FileManager.default.copyItem(at: Fixtures.url("spm.tokenizer.json"), to: tokenizerURL)
        let config = #"""
            {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "unk_token": "<unk>",
             "add_bos_token": true, "add_eos_token": true,
             "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}
            """#
        try Data(config.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        let tokenizer = try load(tokenizerJSON: tokenizerURL)
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.unknownTokenID == 0)
        #expect(tokenizer.addsBOS && tokenizer.addsEOS)
        let ids = tokenizer.encode("hello")
        #expect(ids.first == 1 && ids.last == 2)
        #expect(tokenizer.chatTemplate == "D")
        #expect(tokenizer.stopTokenIDs.contains(2))

        try Data(#"{"eos_token": "</s>"}"#.utf8).write(
            to: directory.appendingPathComponent("tokenizer_config.json"))
        try Data("{{ messages }}".utf8).write(
            to: directory.appendingPathComponent("chat_template.jinja"))
        let second = try load(tokenizerJSON: tokenizerURL)
        #expect(second.chatTemplate == "{{ messages }}")
        #expect(second.bosTokenID == nil)
        #expect(!second.addsBOS)
    }
}

@Suite struct TokenizerPerformanceTests {
    /// About 10 kB of English prose, deterministic.
    static let englishText: String = {
        let words = """
            the quick brown fox jumps over a lazy dog while people in the city talk about \
            language models, tokenizers and the weather; it's 2024 and they've seen 3 new \
            releases this year. Researchers said that editing facts in a model should not \
            break other knowledge. Paris is the capital of France, and Rome is in Italy.
            """.split(separator: " ")
        var text = ""
        var index = 0
        while text.utf8.count < 10_000 {
            text += words[(index * 7 + index / 3) % words.count] + (index % 17 == 16 ? ".\n" : " ")
            index += 1
        }
        return text
    }()

    @Test func tenKilobytesOfEnglishEncodeQuickly() throws {
        let tokenizer = try FixtureTokenizers.smolLM2.get()
        let text = Self.englishText
        let clock = ContinuousClock()
        var ids: [Int] = []
        let elapsed = clock.measure { ids = tokenizer.encode(text) }
        #expect(tokenizer.decode(ids) == text)
        // A few ms in release mode; the bound only catches accidental quadratic behaviour.
        #expect(elapsed < .seconds(2), "encoding 10 kB took \(elapsed)")
    }

    @Test func longWordsUseTheHeapPathCorrectly() throws {
        // A single 20 000-scalar SentencePiece word and a 5 000-space run.
        let spm = try FixtureTokenizers.spmGGUF.get()
        let long = String(repeating: "the quick brown fox ", count: 1000)
        let clock = ContinuousClock()
        var ids: [Int] = []
        let elapsed = clock.measure { ids = spm.encode(long, addSpecialTokens: false) }
        #expect(spm.decode(ids) == long)
        #expect(elapsed < .seconds(2), "took \(elapsed)")
        let smol = try FixtureTokenizers.smolLM2.get()
        let spaces = String(repeating: " ", count: 5000) + "x"
        #expect(smol.decode(smol.encode(spaces)) == spaces)
    }

    @Test func concurrentEncodingGivesTheSameIds() async throws {
        let tokenizer = try FixtureTokenizers.smolLM2.get()
        let strings = Array(Fixtures.strings.prefix(200))
        let expected = strings.map { tokenizer.encode($0) }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 {
                group.addTask { strings.map { tokenizer.encode($0) } == expected }
            }
            for try await same in group {
                #expect(same)
            }
        }
    }
}

/// Timings, printed; run with `IBKE_BENCHMARKS=1 swift test -c release --filter TokenizerBenchmarks`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["IBKE_BENCHMARKS"] != nil))
struct TokenizerBenchmarks {
    @Test func encodeTenKilobytes() throws {
        let clock = ContinuousClock()
        var smol: (any Tokenizer)?
        let fixtureLoad = clock.measure { smol = try? FixtureTokenizers.smolLM2.get() }
        let tokenizer = try #require(smol)
        let text = TokenizerPerformanceTests.englishText
        let cold = clock.measure { _ = tokenizer.encode(text) }
        var count = 0
        let warm = clock.measure { for _ in 0..<20 { count = tokenizer.encode(text).count } }
        let spm = try FixtureTokenizers.spmGGUF.get()
        let spmTime = clock.measure { for _ in 0..<20 { _ = spm.encode(text) } }
        let ids = tokenizer.encode(text)
        let decode = clock.measure { for _ in 0..<20 { _ = tokenizer.decode(ids) } }
        let metadata = try Fixtures.ggufMetadata("smollm2-gguf-metadata.json")
        let ggufBuild = try clock.measure { _ = try load(ggufMetadata: metadata) }
        if let directory = ProcessInfo.processInfo.environment["IBKE_TOKENIZER_FUZZ_DIR"] {
            let url = URL(fileURLWithPath: directory).appendingPathComponent(
                "smollm2.tokenizer.json")
            let jsonLoad = try clock.measure { _ = try load(tokenizerJSON: url) }
            print("smollm2 tokenizer.json (3.5 MB) load: \(jsonLoad)")
        }
        print(
            """
            smollm2 GGUF load (fixture JSON parse + build): \(fixtureLoad); build from metadata: \(ggufBuild)
            10 kB English, \(count) tokens: first encode \(cold), cached \(warm / 20) per encode
            spm (GGUF, one 10 kB word per line break-free run): \(spmTime / 20) per encode
            decode \(ids.count) ids: \(decode / 20)
            """)
    }
}

@Suite struct TokenizerJSONFormTests {
    /// Writes `json` as a tokenizer.json in a fresh folder and loads it.
    static func loadJSON(_ json: String) throws -> any Tokenizer {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ibke-tokenizer-form-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("tokenizer.json")
        try Data(json.utf8).write(to: url)
        return try Tokenizers.load(tokenizerJSON: url)
    }

    @Test func stringMergesAndRobertaPostProcessor() throws {
        let tokenizer = try Self.loadJSON(
            #"""
            {"added_tokens": [
                {"id": 0, "content": "<s>", "special": true},
                {"id": 1, "content": "</s>", "special": true}],
             "pre_tokenizer": {"type": "Digits", "individual_digits": false},
             "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0]},
             "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true,
                "vocab": {"<s>": 0, "</s>": 1, "a": 2, "b": 3, "ab": 4, "c": 5, "abc": 6, "<unk>": 7,
                          "1": 8, "2": 9, "12": 10},
                "merges": ["a b", "ab c", "1 2"]}}
            """#)
        #expect(tokenizer.encode("abcab") == [0, 6, 4, 1])
        // Unknown scalars become <unk>, consecutive ones fused; "12" is one Digits piece.
        #expect(tokenizer.encode("axyb12", addSpecialTokens: false) == [2, 7, 3, 10])
        #expect(tokenizer.decode([0, 6, 4, 1], skipSpecialTokens: true) == "abcab")
        #expect(tokenizer.vocabularySize == 11)
        #expect(tokenizer.unknownTokenID == 7)
    }

    /// A key written twice takes its last value, as when tokenizers (serde) reads the file.
    @Test func duplicateKeysTakeTheLastValue() throws {
        let tokenizer = try Self.loadJSON(
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "a": 2}, "merges": []}}"#)
        #expect(tokenizer.id(of: "a") == 2)
        #expect(tokenizer.encode("ab") == [2, 1])
    }

    /// An id far beyond the vocabulary (once: 9 GB allocated, 80 s) is refused at once.
    @Test func idsBeyondTheVocabularyAreRefused() throws {
        for json in [
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 300000000}, "merges": []}}"#,
            #"{"added_tokens": [{"id": 300000000, "content": "<x>"}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#,
        ] {
            #expect {
                try Self.loadJSON(json)
            } throws: { error in
                "\(error)".contains("tokenizer.json") && "\(error)".contains("id")
            }
        }
    }

    @Test func canonicallyEquivalentTokensStayDistinct() throws {
        // "é" (U+00E9) and "e" + U+0301 are equal as Swift Strings but different tokens.
        let tokenizer = try Self.loadJSON(
            #"""
            {"model": {"type": "BPE",
                "vocab": {"\u00e9": 0, "e": 1, "\u0301": 2, "e\u0301": 3},
                "merges": [["e", "\u0301"]]}}
            """#)
        #expect(tokenizer.encode("\u{e9}") == [0])
        #expect(tokenizer.encode("e\u{301}") == [3])
        #expect(tokenizer.encode("\u{e9}e\u{301}\u{e9}") == [0, 3, 0])
        #expect(tokenizer.id(of: "e\u{301}") == 3)
        #expect(tokenizer.id(of: "\u{e9}") == 0)
    }
}

@Suite struct VocabularyIndexTests {
    /// Whatever the entries, the index answers as the dictionary built from the same assignments.
    @Test(arguments: [0, 1, 7, 500])
    func answersAsTheDictionaryOfTheSameEntries(seed: Int) {
        // Few distinct spellings, so repeats (a later entry replaces an earlier one) are common.
        let alphabet = ["a", "b", "é", "e\u{301}", "\u{2001}", "\u{2003}", " ", "Ġ"]
        var state = UInt64(seed) &* 6_364_136_223_846_793_005 &+ 1
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33) % n
        }
        let tokens = (0..<(seed * 3 + 5)).map { _ in (0..<next(3)).map { _ in alphabet[next(alphabet.count)] }.joined() }
        var dictionary: [ExactString: Int32] = [:]
        for (id, token) in tokens.enumerated() where !token.isEmpty { dictionary[exact: token] = Int32(id) }
        let index = VocabularyIndex(tokens: tokens)
        #expect(index.count == dictionary.count)
        for probe in tokens + alphabet + ["", "ab", "zz", "é\u{301}"] {
            #expect(index[exact: probe] == dictionary[exact: probe], "\(probe.unicodeScalars.map(\.value))")
        }
        #expect(Dictionary(uniqueKeysWithValues: index.pairs.map { (ExactString($0.spelling), $0.id) }) == dictionary)

        let entries = tokens.enumerated().map { ($1, Int32(1000 - $0)) }
        var explicit: [ExactString: Int32] = [:]
        for (token, id) in entries where !token.isEmpty { explicit[exact: token] = id }
        let explicitIndex = VocabularyIndex(entries: entries)
        for probe in tokens + alphabet { #expect(explicitIndex[exact: probe] == explicit[exact: probe]) }
    }

    /// Canonically equivalent spellings are different tokens, as in the vocabularies' files.
    @Test func tellsCanonicallyEquivalentSpellingsApart() {
        let index = VocabularyIndex(tokens: ["é", "e\u{301}", "\u{2001}", "\u{2003}"])
        #expect(index[exact: "é"] == 0)
        #expect(index[exact: "e\u{301}"] == 1)
        #expect(index[exact: "\u{2001}"] == 2)
        #expect(index[exact: "\u{2003}"] == 3)
        #expect(index[exact: "e"] == nil)
    }
}
