import ModelFormats

/// Builds the tokenizer that a GGUF file's `tokenizer.*` metadata describes.
///
/// Call it as `Tokenizers.load(ggufMetadata: reader.metadata, source: "model.gguf")`.
///
/// Supported `tokenizer.ggml.model` values:
/// - `gpt2`: byte-level BPE with `tokenizer.ggml.merges`; the pre-tokenizer comes from
///   `tokenizer.ggml.pre` (`default`/`gpt2`, the `smollm`/`starcoder` family, the `llama3` family,
///   the `qwen2` family; others throw).
/// - `llama`: SentencePiece BPE. Merges follow `tokenizer.ggml.scores` (highest score first, as
///   llama.cpp's `llm_tokenizer_spm`), with `<0xNN>` byte fallback and a `▁` prefix unless
///   `tokenizer.ggml.add_space_prefix` is false.
///
/// The result matches transformers' `AutoTokenizer.from_pretrained(dir, gguf_file:)` (control
/// tokens, type 3, become special added tokens; user-defined ones, type 4, plain added tokens; BOS
/// is added when `tokenizer.ggml.add_bos_token` says so, by default for `llama`), with two choices
/// made where transformers departs from the model's own tokenizer and from llama.cpp:
/// - `pre = smollm` (and its family) splits numbers off before the GPT-2 regex, as SmolLM2's
///   `tokenizer.json` and llama.cpp do; transformers uses the GPT-2 regex alone, which differs on
///   whitespace runs before a digit (`"x  1"`). Pass `preTokenizer: .byteLevel(addPrefixSpace:
///   false, useRegex: true)` to get transformers' behaviour.
/// - the `llama3` family emits words found whole in the vocabulary unmerged (`ignore_merges`), as
///   Llama 3's `tokenizer.json` and llama.cpp do.
///
/// - Parameters:
///   - metadata: the GGUF key-value metadata (only `tokenizer.*` keys are read).
///   - source: the file name, for error messages.
///   - preTokenizer: replaces the pre-tokenizer `tokenizer.ggml.pre` selects.
/// - Throws: ``TokenizerError`` naming the key that is missing, malformed or unsupported.
public func load(
    ggufMetadata metadata: [String: GGUFValue], source: String = "GGUF metadata",
    preTokenizer: PreTokenizer? = nil
) throws -> any Tokenizer {
    try GGUFTokenizerBuilder(metadata: metadata, source: source).build(
        preTokenizerOverride: preTokenizer)
}

/// The GGUF `tokenizer.*` keys, read with type checks that name the key on failure.
private struct GGUFTokenizerBuilder {
    let metadata: [String: GGUFValue]
    let source: String

    /// llama.cpp token types (`llama_token_type`).
    enum TokenType: Int {
        case undefined = 0
        case normal, unknown, control, userDefined, unused, byte
    }

    func build(preTokenizerOverride: PreTokenizer?) throws -> any Tokenizer {
        let modelKey = "tokenizer.ggml.model"
        guard let model = try string(modelKey) else {
            throw TokenizerError.missingField(source: source, field: modelKey)
        }
        guard let tokens = try strings("tokenizer.ggml.tokens") else {
            throw TokenizerError.missingField(source: source, field: "tokenizer.ggml.tokens")
        }
        guard !tokens.isEmpty else {
            throw TokenizerError.invalidField(
                source: source, field: "tokenizer.ggml.tokens", reason: "empty vocabulary")
        }
        let types =
            try integers("tokenizer.ggml.token_type", count: tokens.count)
            ?? Array(repeating: TokenType.normal.rawValue, count: tokens.count)
        var special = BPETokenizer.SpecialIDs()
        special.bos = try tokenID("tokenizer.ggml.bos_token_id", count: tokens.count)
        special.eos = try tokenID("tokenizer.ggml.eos_token_id", count: tokens.count)
        special.unknown = try tokenID("tokenizer.ggml.unknown_token_id", count: tokens.count)
        special.padding = try tokenID("tokenizer.ggml.padding_token_id", count: tokens.count)
        special.endOfTurn = try ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .compactMap {
                try tokenID($0, count: tokens.count)
            }
        let chatTemplate = try string("tokenizer.chat_template")

        switch model {
        case "gpt2":
            return try buildByteLevel(
                tokens: tokens, types: types, special: special, chatTemplate: chatTemplate,
                preTokenizerOverride: preTokenizerOverride)
        case "llama":
            return try buildSentencePiece(
                tokens: tokens, types: types, special: special, chatTemplate: chatTemplate,
                preTokenizerOverride: preTokenizerOverride)
        default:
            throw TokenizerError.unsupported(source: source, field: modelKey, value: "\"\(model)\"")
        }
    }

    // MARK: Byte-level BPE (`gpt2`)

    private func buildByteLevel(
        tokens fileTokens: [String], types: [Int], special: BPETokenizer.SpecialIDs,
        chatTemplate: String?, preTokenizerOverride: PreTokenizer?
    ) throws -> any Tokenizer {
        // Tokens outside the byte alphabet (a raw added token) are respelled from their UTF-8, as
        // transformers does, so the merges and the byte table find them.
        let tokens = fileTokens.map {
            ByteLevel.isSpelledInAlphabet($0) ? $0 : ByteLevel.spell($0.utf8)
        }
        let vocab = VocabularyIndex(tokens: tokens)
        let mergesKey = "tokenizer.ggml.merges"
        guard let mergeLines = try strings(mergesKey) else {
            throw TokenizerError.missingField(source: source, field: mergesKey)
        }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeLines.count)
        for (rank, line) in mergeLines.enumerated() {
            guard let space = line.firstIndex(of: " ") else {
                throw TokenizerError.invalidField(
                    source: source, field: mergesKey,
                    reason: "merge \(rank) \"\(line)\" is not two tokens")
            }
            let left = String(line[..<space])
            let right = String(line[line.index(after: space)...])
            guard let l = vocab[exact: left], let r = vocab[exact: right],
                let merged = vocab[exact: left + right]
            else {
                throw TokenizerError.invalidField(
                    source: source, field: mergesKey,
                    reason: "merge \(rank) \"\(line)\" uses a token not in the vocabulary")
            }
            let key = BPEModel.pairKey(l, r)
            if merges[key] == nil {
                merges[key] = BPEModel.mergeValue(priority: rank, merged: Int(merged))
            }
        }
        let byteIDs = (0..<256).map { vocab[exact: ByteLevel.spell([UInt8($0)])] ?? -1 }

        // Pre-tokenizer names as llama.cpp's converter writes them (`tokenizer.ggml.pre`): they
        // name a vocabulary's split rules, not a model architecture, and several families share one.
        let preKey = "tokenizer.ggml.pre"
        let pre = try string(preKey) ?? "default"
        let preTokenizer: PreTokenizer
        var ignoreMerges = false
        switch pre {
        case "default", "gpt2", "gpt-2":
            preTokenizer = .byteLevel(addPrefixSpace: false, useRegex: true)
        case "smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva":
            preTokenizer = .smollm
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
            "lfm2",
            "dbrx", "smaug-bpe":
            preTokenizer = .sequence([
                .split(.llama3), .byteLevel(addPrefixSpace: false, useRegex: false),
            ])
            ignoreMerges = true
        case "qwen2", "deepseek-r1-qwen", "megrez":
            preTokenizer = .sequence([
                .split(.qwen2), .byteLevel(addPrefixSpace: false, useRegex: false),
            ])
        default:
            if preTokenizerOverride == nil {
                throw TokenizerError.unsupported(source: source, field: preKey, value: "\"\(pre)\"")
            }
            preTokenizer = .byteLevel(addPrefixSpace: false, useRegex: true)
        }

        var added: [AddedToken] = []
        var seen = Set<Int>()
        for (id, type) in types.enumerated() {
            let token = fileTokens[id]
            if type == TokenType.control.rawValue && ByteLevel.isSpelledInAlphabet(token) {
                added.append(AddedToken(id: id, content: token, special: true))
                seen.insert(id)
            } else if type == TokenType.userDefined.rawValue
                && tokens[id].utf8.elementsEqual(token.utf8)
            {
                added.append(AddedToken(id: id, content: token, special: false))
                seen.insert(id)
            }
        }
        for id in [special.bos, special.eos, special.unknown, special.padding].compactMap({ $0 })
        where !seen.contains(id) && ByteLevel.isSpelledInAlphabet(fileTokens[id]) {
            added.append(AddedToken(id: id, content: fileTokens[id], special: true))
            seen.insert(id)
        }

        let (prefix, suffix) = try specialTokensAround(special: special, addBOSByDefault: false)
        return BPETokenizer(
            tokens: tokens, tokenIDs: vocab, addedTokens: added, normalizer: nil,
            preTokenizer: preTokenizerOverride ?? preTokenizer,
            model: BPEModel(
                symbols: .bytes(byteIDs), merges: merges, wholeWords: ignoreMerges ? vocab : nil),
            prefix: prefix, suffix: suffix, decoder: .byteLevel, special: special,
            chatTemplate: chatTemplate)
    }

    // MARK: SentencePiece BPE (`llama`)

    private func buildSentencePiece(
        tokens: [String], types: [Int], special: BPETokenizer.SpecialIDs, chatTemplate: String?,
        preTokenizerOverride: PreTokenizer?
    ) throws -> any Tokenizer {
        let scoresKey = "tokenizer.ggml.scores"
        guard let scores = try floats(scoresKey, count: tokens.count) else {
            throw TokenizerError.missingField(source: source, field: scoresKey)
        }
        let vocab = VocabularyIndex(tokens: tokens)
        var scalarIDs: [UInt32: Int32] = [:]
        for (id, token) in tokens.enumerated() {
            let scalars = token.unicodeScalars
            if scalars.count == 1, let scalar = scalars.first {
                scalarIDs[scalar.value] = Int32(id)
            }
        }
        // A pair merges into the token it spells, at the rank of that token's score (equal scores
        // share a rank, so the leftmost pair goes first, as in llm_tokenizer_spm).
        let ranks = Dictionary(
            uniqueKeysWithValues: Set(scores).sorted(by: >).enumerated().map { ($1, $0) })
        var merges: [UInt64: UInt64] = [:]
        for (text, merged) in vocab.pairs {
            let scalars = Array(text.unicodeScalars)
            guard scalars.count > 1 else { continue }
            let priority = ranks[scores[Int(merged)]] ?? ranks.count
            for k in 1..<scalars.count {
                var leftView = String.UnicodeScalarView()
                leftView.append(contentsOf: scalars[..<k])
                var rightView = String.UnicodeScalarView()
                rightView.append(contentsOf: scalars[k...])
                if let l = vocab[exact: String(leftView)], let r = vocab[exact: String(rightView)] {
                    merges[BPEModel.pairKey(l, r)] = BPEModel.mergeValue(
                        priority: priority, merged: Int(merged))
                }
            }
        }
        var byteIDs: [Int32] = []
        for byte in 0..<256 {
            let hex = String(byte, radix: 16, uppercase: true)
            byteIDs.append(vocab[exact: "<0x" + (byte < 16 ? "0" : "") + hex + ">"] ?? -1)
        }
        let byteFallback = byteIDs.contains { $0 >= 0 } ? byteIDs : nil

        var added: [AddedToken] = []
        var seen = Set<Int>()
        for (id, type) in types.enumerated() {
            if type == TokenType.control.rawValue {
                added.append(AddedToken(id: id, content: tokens[id], special: true))
                seen.insert(id)
            } else if type == TokenType.userDefined.rawValue {
                added.append(AddedToken(id: id, content: tokens[id], special: false))
                seen.insert(id)
            }
        }
        for id in [special.unknown, special.bos, special.eos, special.padding].compactMap({ $0 })
        where !seen.contains(id) {
            added.append(AddedToken(id: id, content: tokens[id], special: true))
            seen.insert(id)
        }

        let addSpacePrefix = try bool("tokenizer.ggml.add_space_prefix") ?? true
        let metaspace: Unicode.Scalar = "\u{2581}"
        let preTokenizer = PreTokenizer.metaspace(
            replacement: metaspace, prependScheme: addSpacePrefix ? .first : .never, split: false)
        var decoderSteps: [TokenDecoder] = [
            .replace(pattern: "\u{2581}", content: " "), .byteFallback, .fuse,
        ]
        if addSpacePrefix {
            decoderSteps.append(.strip(content: " ", start: 1, stop: 0))
        }
        let (prefix, suffix) = try specialTokensAround(special: special, addBOSByDefault: true)
        let unknown = special.unknown.map { Int32($0) }
        return BPETokenizer(
            tokens: tokens, tokenIDs: vocab, addedTokens: added, normalizer: nil,
            preTokenizer: preTokenizerOverride ?? preTokenizer,
            model: BPEModel(
                symbols: .scalars(
                    scalarIDs, byteFallback: byteFallback, unknown: unknown, fuseUnknown: true),
                merges: merges),
            prefix: prefix, suffix: suffix, decoder: .sequence(decoderSteps), special: special,
            chatTemplate: chatTemplate)
    }

    // MARK: Shared

    /// BOS/EOS around a sequence, from `add_bos_token`/`add_eos_token`.
    private func specialTokensAround(
        special: BPETokenizer.SpecialIDs, addBOSByDefault: Bool
    ) throws -> ([Int], [Int]) {
        let addBOS = try bool("tokenizer.ggml.add_bos_token") ?? addBOSByDefault
        let addEOS = try bool("tokenizer.ggml.add_eos_token") ?? false
        var prefix: [Int] = []
        var suffix: [Int] = []
        if addBOS {
            guard let bos = special.bos else {
                throw TokenizerError.missingField(
                    source: source, field: "tokenizer.ggml.bos_token_id")
            }
            prefix = [bos]
        }
        if addEOS {
            guard let eos = special.eos else {
                throw TokenizerError.missingField(
                    source: source, field: "tokenizer.ggml.eos_token_id")
            }
            suffix = [eos]
        }
        return (prefix, suffix)
    }

    private func string(_ key: String) throws -> String? {
        guard let value = metadata[key] else { return nil }
        guard let string = value.stringValue else { throw typeError(key, "a string") }
        return string
    }

    private func bool(_ key: String) throws -> Bool? {
        guard let value = metadata[key] else { return nil }
        if let bool = value.boolValue { return bool }
        if let int = value.intValue { return int != 0 }
        throw typeError(key, "a bool")
    }

    private func tokenID(_ key: String, count: Int) throws -> Int? {
        guard let value = metadata[key] else { return nil }
        guard let id = value.intValue else { throw typeError(key, "an integer") }
        // llama.cpp writes -1 (as uint32 0xFFFFFFFF in some files) for "none".
        if id == -1 || id == Int(UInt32.max) { return nil }
        guard (0..<count).contains(id) else {
            throw TokenizerError.invalidField(
                source: source, field: key,
                reason: "id \(id) is outside the vocabulary of \(count) tokens")
        }
        return id
    }

    private func strings(_ key: String) throws -> [String]? {
        guard let value = metadata[key] else { return nil }
        guard let strings = value.arrayValue?.mapAll(\.stringValue) else {
            throw typeError(key, "an array of strings")
        }
        return strings
    }

    private func integers(_ key: String, count: Int) throws -> [Int]? {
        guard let value = metadata[key] else { return nil }
        guard let array = value.arrayValue else { throw typeError(key, "an array of integers") }
        guard array.count == count else { throw lengthError(key, array.count, count) }
        guard let ints = array.mapAll(\.intValue) else {
            throw typeError(key, "an array of integers")
        }
        return ints
    }

    private func floats(_ key: String, count: Int) throws -> [Float]? {
        guard let value = metadata[key] else { return nil }
        guard let array = value.arrayValue else { throw typeError(key, "an array of numbers") }
        guard array.count == count else { throw lengthError(key, array.count, count) }
        guard let floats = array.mapAll({ $0.doubleValue.map(Float.init) }) else {
            throw typeError(key, "an array of numbers")
        }
        return floats
    }

    private func typeError(_ key: String, _ expected: String) -> TokenizerError {
        .invalidField(source: source, field: key, reason: "expected \(expected)")
    }

    private func lengthError(_ key: String, _ count: Int, _ expected: Int) -> TokenizerError {
        .invalidField(source: source, field: key, reason: "\(count) entries for \(expected) tokens")
    }
}
