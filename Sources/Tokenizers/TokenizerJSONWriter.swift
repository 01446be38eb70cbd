import ModelFormats

extension BPETokenizer {
    /// This tokenizer as Hugging Face files, `tokenizer.json` and `tokenizer_config.json`, so
    /// that a model loaded from GGUF can be exported as a Hugging Face folder.
    ///
    /// The files are written from the stages IBKE runs (vocabulary, merges in rank order,
    /// added tokens, the pre-tokenizer `tokenizer.ggml.pre` selected, BOS/EOS, chat template)
    /// rather than re-derived from the metadata, so that they encode exactly as the model did.
    ///
    /// A SentencePiece vocabulary (GGUF `llama`) merges a pair into the token it spells at the
    /// rank of that token's score; the merge list is written in that order, which transformers'
    /// BPE applies the same way as long as no two different tokens share a score (which tokens
    /// then merge first would depend on their position, which a list cannot say).
    ///
    /// - Parameters:
    ///   - source: the model file, for error messages.
    ///   - modelMaxLength: the context length, recorded in the config.
    /// - Throws: ``TokenizerError/unsupported(source:field:value:)`` for a tokenizer these files
    ///   cannot express faithfully: a SentencePiece vocabulary in which two tokens that merges
    ///   can form share a score, or a vocabulary that spells two tokens the same.
    public func huggingFaceFiles(source: String, modelMaxLength: Int) throws -> (tokenizer: JSONValue, config: JSONValue) {
        func unsupported(_ value: String) -> TokenizerError {
            .unsupported(source: source, field: "tokenizer conversion to tokenizer.json", value: value)
        }
        var vocab = JSONObject()
        for (id, token) in vocabulary.enumerated() where !token.isEmpty {
            if vocab.updateValue(.int(id), forKey: token) != nil {
                throw unsupported("of a vocabulary that spells two tokens \"\(token)\"")
            }
        }
        // Merge order: priority, then the merged token and the left part (for a stable file).
        let ordered = model.merges.map { pair, value in
            (priority: Int(value >> 32), merged: Int(value & 0xFFFF_FFFF), left: Int(pair >> 32), right: Int(pair & 0xFFFF_FFFF))
        }.sorted { ($0.priority, $0.merged, $0.left) < ($1.priority, $1.merged, $1.left) }
        var byteFallback = false
        var unknown = unknownTokenID
        var fuseUnknown = false
        if case .scalars(_, let fallback, let unknownID, let fuse) = model.symbols {
            // Tokens matched whole before the model runs are never formed by merges.
            let whole = Set(addedTokenList.map(\.id))
            var tokenAtPriority: [Int: Int] = [:]
            for merge in ordered where !whole.contains(merge.merged) {
                if let other = tokenAtPriority.updateValue(merge.merged, forKey: merge.priority), other != merge.merged {
                    throw unsupported(
                        "of a SentencePiece vocabulary whose tokens \"\(tokens[other])\" and \"\(tokens[merge.merged])\" share a score")
                }
            }
            byteFallback = fallback != nil
            unknown = unknownID.map(Int.init) ?? unknown
            fuseUnknown = fuse
        }
        let merges = ordered.map { JSONValue.array([.string(vocabulary[$0.left]), .string(vocabulary[$0.right])]) }
        let bpe: JSONObject = [
            "type": .string("BPE"), "dropout": .null, "unk_token": unknown.map { .string(tokens[$0]) } ?? .null,
            "continuing_subword_prefix": .null, "end_of_word_suffix": .null, "fuse_unk": .bool(fuseUnknown),
            "byte_fallback": .bool(byteFallback), "ignore_merges": .bool(model.wholeWords != nil),
            "vocab": .object(vocab), "merges": .array(merges),
        ]
        let tokenizer: JSONObject = [
            "version": .string("1.0"), "truncation": .null, "padding": .null,
            "added_tokens": .array(addedTokenList.map(\.json)),
            "normalizer": normalizer?.json ?? .null,
            "pre_tokenizer": preTokenizer?.json ?? .null,
            "post_processor": postProcessorJSON,
            "decoder": decoder?.json ?? .null,
            "model": .object(bpe),
        ]
        return (.object(tokenizer), .object(configJSON(modelMaxLength: modelMaxLength)))
    }

    /// Byte-level offsets (byte-level vocabularies), then BOS/EOS as a template (what
    /// transformers writes for Llama 3 and Gemma).
    private var postProcessorJSON: JSONValue {
        var byteLevel: JSONValue?
        if case .bytes = model.symbols {
            byteLevel = .object([
                "type": .string("ByteLevel"), "add_prefix_space": .bool(true),
                "trim_offsets": .bool(false), "use_regex": .bool(true),
            ])
        }
        guard !prefix.isEmpty || !suffix.isEmpty else { return byteLevel ?? .null }
        func special(_ id: Int, _ typeID: Int) -> JSONValue {
            .object(["SpecialToken": .object(["id": .string(tokens[id]), "type_id": .int(typeID)])])
        }
        func sequence(_ name: String, _ typeID: Int) -> JSONValue {
            .object(["Sequence": .object(["id": .string(name), "type_id": .int(typeID)])])
        }
        let single = prefix.map { special($0, 0) } + [sequence("A", 0)] + suffix.map { special($0, 0) }
        let pair = single + prefix.map { special($0, 1) } + [sequence("B", 1)] + suffix.map { special($0, 1) }
        var specials = JSONObject()
        for id in Set(prefix + suffix).sorted() {
            let entry: JSONObject = [
                "id": .string(tokens[id]), "ids": .array([.int(id)]),
                "tokens": .array([.string(tokens[id])]),
            ]
            specials.updateValue(.object(entry), forKey: tokens[id])
        }
        let template: JSONValue = .object([
            "type": .string("TemplateProcessing"), "single": .array(single), "pair": .array(pair),
            "special_tokens": .object(specials),
        ])
        guard let byteLevel else { return template }
        return .object(["type": .string("Sequence"), "processors": .array([byteLevel, template])])
    }

    /// Special token names, BOS/EOS flags and the chat template, as transformers reads them.
    private func configJSON(modelMaxLength: Int) -> JSONObject {
        var config: JSONObject = [:]
        // The loaders rebuild the template from these flags: write them only where they say the same.
        if prefix == (addsBOS ? [bosTokenID!] : []) && suffix == (addsEOS ? [eosTokenID!] : []) {
            config.updateValue(.bool(addsBOS), forKey: "add_bos_token")
            config.updateValue(.bool(addsEOS), forKey: "add_eos_token")
        }
        for (key, id) in [
            ("bos_token", bosTokenID), ("eos_token", eosTokenID), ("unk_token", unknownTokenID),
            ("pad_token", paddingTokenID),
        ] {
            if let id { config.updateValue(.string(tokens[id]), forKey: key) }
        }
        if let chatTemplate { config.updateValue(.string(chatTemplate), forKey: "chat_template") }
        config.updateValue(.bool(false), forKey: "clean_up_tokenization_spaces")
        config.updateValue(.int(modelMaxLength), forKey: "model_max_length")
        config.updateValue(.string("PreTrainedTokenizerFast"), forKey: "tokenizer_class")
        return config
    }
}

// MARK: Stages as tokenizer.json objects (what TokenizerJSONLoader.swift reads)

extension AddedToken {
    var json: JSONValue {
        .object([
            "id": .int(id), "content": .string(content), "single_word": .bool(singleWord), "lstrip": .bool(lstrip),
            "rstrip": .bool(rstrip), "normalized": .bool(normalized), "special": .bool(special),
        ])
    }
}

extension Normalizer {
    var json: JSONValue {
        switch self {
        case .prepend(let prefix): .object(["type": .string("Prepend"), "prepend": .string(prefix)])
        case .replace(let pattern, let content):
            .object(["type": .string("Replace"), "pattern": .object(["String": .string(pattern)]), "content": .string(content)])
        case .nfc: .object(["type": .string("NFC")])
        case .nfd: .object(["type": .string("NFD")])
        case .nfkc: .object(["type": .string("NFKC")])
        case .nfkd: .object(["type": .string("NFKD")])
        case .lowercase: .object(["type": .string("Lowercase")])
        case .strip(let left, let right): .object(["type": .string("Strip"), "strip_left": .bool(left), "strip_right": .bool(right)])
        case .sequence(let stages): .object(["type": .string("Sequence"), "normalizers": .array(stages.map(\.json))])
        }
    }
}

extension PreTokenizer {
    var json: JSONValue {
        switch self {
        case .split(let pattern):
            .object([
                "type": .string("Split"), "pattern": .object(["Regex": .string(pattern.regex)]), "behavior": .string("Isolated"),
                "invert": .bool(false),
            ])
        case .digits(let individual): .object(["type": .string("Digits"), "individual_digits": .bool(individual)])
        case .byteLevel(let addPrefixSpace, let useRegex):
            .object([
                "type": .string("ByteLevel"), "add_prefix_space": .bool(addPrefixSpace), "trim_offsets": .bool(true),
                "use_regex": .bool(useRegex),
            ])
        case .metaspace(let replacement, let scheme, let split):
            .object([
                "type": .string("Metaspace"), "replacement": .string(String(replacement)),
                "prepend_scheme": .string(scheme.rawValue), "split": .bool(split),
            ])
        case .sequence(let stages): .object(["type": .string("Sequence"), "pretokenizers": .array(stages.map(\.json))])
        }
    }
}

extension TokenDecoder {
    var json: JSONValue {
        switch self {
        case .byteLevel:
            .object([
                "type": .string("ByteLevel"), "add_prefix_space": .bool(true), "trim_offsets": .bool(true),
                "use_regex": .bool(true),
            ])
        case .replace(let pattern, let content):
            .object(["type": .string("Replace"), "pattern": .object(["String": .string(pattern)]), "content": .string(content)])
        case .byteFallback: .object(["type": .string("ByteFallback")])
        case .fuse: .object(["type": .string("Fuse")])
        case .strip(let content, let start, let stop):
            .object(["type": .string("Strip"), "content": .string(String(content)), "start": .int(start), "stop": .int(stop)])
        case .metaspace(let replacement, let scheme):
            .object([
                "type": .string("Metaspace"), "replacement": .string(String(replacement)),
                "prepend_scheme": .string(scheme.rawValue), "split": .bool(true),
            ])
        case .sequence(let steps): .object(["type": .string("Sequence"), "decoders": .array(steps.map(\.json))])
        }
    }
}
