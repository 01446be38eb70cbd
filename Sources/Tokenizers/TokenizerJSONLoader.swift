import Foundation
import ModelFormats

/// Builds the tokenizer an HF `tokenizer.json` describes.
///
/// Call it as `Tokenizers.load(tokenizerJSON: url)`.
///
/// Supported: model `BPE`, byte-level (GPT-2, Llama 3, Qwen2, SmolLM2: a `ByteLevel`
/// pre-tokenizer, possibly after `Split` with one of the known regexes or `Digits`) or with
/// `byte_fallback` (Llama 2, Mistral: `Metaspace` pre-tokenizer, or the legacy `Prepend`/`Replace`
/// normalizer); merges as `"a b"` strings or `["a", "b"]` pairs; `ignore_merges`; added tokens with
/// their `special`, `lstrip`, `rstrip`, `single_word` and `normalized` attributes; the
/// `TemplateProcessing`, `RobertaProcessing`, `BertProcessing` and `ByteLevel` post-processors; the
/// `ByteLevel`, `Metaspace`, `Replace`, `ByteFallback`, `Fuse` and `Strip` decoders. Anything else
/// throws ``TokenizerError/unsupported(source:field:value:)`` naming the field.
///
/// - Parameters:
///   - tokenizerJSON: the `tokenizer.json` file.
///   - configJSON: its `tokenizer_config.json`, for the BOS/EOS/UNK/PAD token names,
///     `add_bos_token`/`add_eos_token` and the chat template. Nil looks for `tokenizer_config.json`
///     beside `tokenizerJSON` and uses it if it exists. A `chat_template.jinja` beside either file
///     supplies the template when the config has none.
/// - Throws: ``TokenizerError`` naming the file and the field.
public func load(tokenizerJSON: URL, configJSON: URL? = nil) throws -> any Tokenizer {
    let directory = tokenizerJSON.deletingLastPathComponent()
    let tokenizerObject = try readJSONObject(tokenizerJSON)
    var configURL = configJSON
    if configURL == nil {
        let sibling = directory.appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: sibling.path) {
            configURL = sibling
        }
    }
    let config = try configURL.map { url in
        (object: try readJSONObject(url), source: url.lastPathComponent)
    }
    var templateFile: String?
    for folder in [configURL?.deletingLastPathComponent(), directory].compactMap({ $0 }) {
        let url = folder.appendingPathComponent("chat_template.jinja")
        if templateFile == nil, FileManager.default.fileExists(atPath: url.path),
            let data = try? MappedFile.contents(of: url), let text = String(data: data, encoding: .utf8)
        {
            templateFile = text
        }
    }
    return try TokenizerJSONBuilder(source: tokenizerJSON.lastPathComponent)
        .build(tokenizerObject, config: config, chatTemplateFile: templateFile)
}

private func readJSONObject(_ url: URL) throws -> JSONObject {
    let data: Data
    do {
        data = try MappedFile.contents(of: url)
    } catch {
        throw TokenizerError.unreadable(source: url.lastPathComponent, reason: error.detail)
    }
    let json: JSONValue
    do {
        // Duplicate keys: the last wins, as when the reference implementation reads the file.
        json = try JSONValue.parse(data, duplicateKeys: .useLast)
    } catch {
        throw TokenizerError.unreadable(
            source: url.lastPathComponent, reason: "invalid JSON: \(error)")
    }
    guard let object = json.objectValue else {
        throw TokenizerError.unreadable(source: url.lastPathComponent, reason: "not a JSON object")
    }
    return object
}

/// Reads the stages of a `tokenizer.json`; `field` arguments are dotted paths for messages.
private struct TokenizerJSONBuilder {
    let source: String

    func build(
        _ root: JSONObject, config: (object: JSONObject, source: String)?, chatTemplateFile: String?
    ) throws -> any Tokenizer {
        let normalizer = try root["normalizer"].flatMap {
            try makeNormalizer($0, field: "normalizer")
        }
        let preTokenizer = try root["pre_tokenizer"].flatMap {
            try makePreTokenizer($0, field: "pre_tokenizer")
        }
        let decoder = try root["decoder"].flatMap { try makeDecoder($0, field: "decoder") }

        let added = try addedTokens(root["added_tokens"], vocabularyEntries: root["model"]?["vocab"]?.objectValue?.count ?? 0)
        guard let model = root["model"]?.objectValue else {
            throw TokenizerError.missingField(source: source, field: "model")
        }
        let (tokens, bpe) = try makeModel(model, byteLevel: preTokenizer?.isByteLevel ?? false)
        let tokenIDs = VocabularyIndex(
            entries: tokens.enumerated().map { ($1, Int32($0)) } + added.map { ($0.content, Int32($0.id)) })

        var (prefix, suffix) =
            try root["post_processor"].flatMap {
                try makePostProcessor($0, field: "post_processor", tokenIDs: tokenIDs)
            } ?? ([], [])

        // tokenizer_config.json: special token names, add_bos/eos overrides, chat template.
        var special = BPETokenizer.SpecialIDs()
        var chatTemplate = chatTemplateFile
        if let (object, configSource) = config {
            func tokenID(_ key: String) throws -> Int? {
                guard let value = object[key], value != .null else { return nil }
                let name = value.stringValue ?? value["content"]?.stringValue
                guard let name else {
                    throw TokenizerError.invalidField(
                        source: configSource, field: key, reason: "expected a token")
                }
                guard let id = tokenIDs[exact: name] else {
                    throw TokenizerError.invalidField(
                        source: configSource, field: key,
                        reason: "\"\(name)\" is not in the vocabulary")
                }
                return Int(id)
            }
            special.bos = try tokenID("bos_token")
            special.eos = try tokenID("eos_token")
            special.unknown = try tokenID("unk_token")
            special.padding = try tokenID("pad_token")
            // transformers rebuilds the post-processor from these flags when the config has them.
            if let addBOS = object["add_bos_token"]?.boolValue {
                prefix = []
                if addBOS {
                    guard let bos = special.bos else {
                        throw TokenizerError.missingField(source: configSource, field: "bos_token")
                    }
                    prefix = [bos]
                }
            }
            if let addEOS = object["add_eos_token"]?.boolValue {
                suffix = []
                if addEOS {
                    guard let eos = special.eos else {
                        throw TokenizerError.missingField(source: configSource, field: "eos_token")
                    }
                    suffix = [eos]
                }
            }
            if let template = object["chat_template"]?.stringValue {
                chatTemplate = template
            } else if let templates = object["chat_template"]?.arrayValue {
                let named =
                    templates.first { $0["name"]?.stringValue == "default" } ?? templates.first
                chatTemplate = named?["template"]?.stringValue ?? chatTemplate
            }
        } else {
            special.bos = prefix.first
            special.eos = suffix.last
        }
        if special.unknown == nil, let unk = model["unk_token"]?.stringValue {
            special.unknown = tokenIDs[exact: unk].map(Int.init)
        }
        return BPETokenizer(
            tokens: tokens, tokenIDs: tokenIDs, addedTokens: added, normalizer: normalizer,
            preTokenizer: preTokenizer, model: bpe, prefix: prefix, suffix: suffix, decoder: decoder, special: special,
            chatTemplate: chatTemplate)
    }

    // MARK: Model

    private func makeModel(_ model: JSONObject, byteLevel: Bool) throws -> ([String], BPEModel) {
        let type = model["type"]?.stringValue ?? "BPE"
        guard type == "BPE" else {
            throw TokenizerError.unsupported(
                source: source, field: "model.type", value: "\"\(type)\"")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = model[key]?.stringValue, !affix.isEmpty {
                throw TokenizerError.unsupported(
                    source: source, field: "model.\(key)", value: "\"\(affix)\"")
            }
        }
        if let dropout = model["dropout"]?.doubleValue, dropout > 0 {
            throw TokenizerError.unsupported(
                source: source, field: "model.dropout", value: "\(dropout)")
        }
        guard let vocabObject = model["vocab"]?.objectValue else {
            throw TokenizerError.missingField(source: source, field: "model.vocab")
        }
        var vocab: [ExactString: Int32] = [:]
        vocab.reserveCapacity(vocabObject.count)
        var maxID = -1
        // Ids index a table: one far beyond the number of entries would allocate gigabytes.
        let idLimit = vocabObject.count + Self.idGapAllowance
        for (token, value) in vocabObject {
            guard let id = value.intValue, id >= 0, id < idLimit else {
                throw TokenizerError.invalidField(
                    source: source, field: "model.vocab",
                    reason: "\"\(token.prefix(40))\" has no valid id (ids run from 0 to below \(idLimit) for \(vocabObject.count) entries)")
            }
            vocab[exact: token] = Int32(id)
            maxID = max(maxID, id)
        }
        var tokens = [String](repeating: "", count: maxID + 1)
        for (token, id) in vocab { tokens[Int(id)] = token.string }

        guard let mergeList = model["merges"]?.arrayValue else {
            throw TokenizerError.missingField(source: source, field: "model.merges")
        }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, entry) in mergeList.enumerated() {
            let pair: (String, String)?
            if let line = entry.stringValue, let space = line.firstIndex(of: " ") {
                pair = (String(line[..<space]), String(line[line.index(after: space)...]))
            } else if let parts = entry.stringArrayValue, parts.count == 2 {
                pair = (parts[0], parts[1])
            } else {
                pair = nil
            }
            guard let (left, right) = pair else {
                throw TokenizerError.invalidField(
                    source: source, field: "model.merges",
                    reason: "entry \(rank) is not a pair of tokens")
            }
            guard let l = vocab[exact: left], let r = vocab[exact: right],
                let merged = vocab[exact: left + right]
            else {
                throw TokenizerError.invalidField(
                    source: source, field: "model.merges",
                    reason:
                        "entry \(rank) (\"\(left)\", \"\(right)\") uses a token not in the vocabulary"
                )
            }
            let key = BPEModel.pairKey(l, r)
            if merges[key] == nil {
                merges[key] = BPEModel.mergeValue(priority: rank, merged: Int(merged))
            }
        }

        let unknown = model["unk_token"]?.stringValue.flatMap { vocab[exact: $0] }
        let symbols: BPEModel.Symbols
        if byteLevel {
            symbols = .bytes((0..<256).map { vocab[exact: ByteLevel.spell([UInt8($0)])] ?? -1 })
        } else {
            var scalarIDs: [UInt32: Int32] = [:]
            for (token, id) in vocab {
                let scalars = token.string.unicodeScalars
                if scalars.count == 1, let scalar = scalars.first { scalarIDs[scalar.value] = id }
            }
            var byteFallback: [Int32]?
            if model["byte_fallback"]?.boolValue == true {
                byteFallback = (0..<256).map { byte in
                    let hex = String(byte, radix: 16, uppercase: true)
                    return vocab[exact: "<0x" + (byte < 16 ? "0" : "") + hex + ">"] ?? -1
                }
            }
            symbols = .scalars(
                scalarIDs, byteFallback: byteFallback, unknown: unknown,
                fuseUnknown: model["fuse_unk"]?.boolValue ?? false)
        }
        let ignoreMerges = model["ignore_merges"]?.boolValue ?? false
        return (
            tokens,
            BPEModel(
                symbols: symbols, merges: merges,
                wholeWords: ignoreMerges ? VocabularyIndex(entries: vocab.map { ($0.key.string, $0.value) }) : nil)
        )
    }

    /// How far past its number of entries a vocabulary's ids may reach (real files have no gaps).
    static let idGapAllowance = 1024

    private func addedTokens(_ value: JSONValue?, vocabularyEntries: Int) throws -> [AddedToken] {
        guard let list = value?.arrayValue else { return [] }
        let idLimit = vocabularyEntries + list.count + Self.idGapAllowance
        return try list.enumerated().map { index, entry in
            guard let id = entry["id"]?.intValue, id >= 0, id < idLimit,
                let content = entry["content"]?.stringValue
            else {
                throw TokenizerError.invalidField(
                    source: source, field: "added_tokens[\(index)]",
                    reason: "needs content and an id from 0 to below \(idLimit)")
            }
            let special = entry["special"]?.boolValue ?? false
            return AddedToken(
                id: id, content: content, special: special,
                normalized: entry["normalized"]?.boolValue ?? !special,
                lstrip: entry["lstrip"]?.boolValue ?? false,
                rstrip: entry["rstrip"]?.boolValue ?? false,
                singleWord: entry["single_word"]?.boolValue ?? false)
        }
    }

    // MARK: Stages

    private func typeOf(_ value: JSONValue, field: String) throws -> (String, JSONObject)? {
        if value == .null { return nil }
        guard let object = value.objectValue, let type = object["type"]?.stringValue else {
            throw TokenizerError.invalidField(
                source: source, field: field, reason: "expected an object with a type")
        }
        return (type, object)
    }

    private func list(_ object: JSONObject, _ key: String, field: String) throws -> [JSONValue] {
        guard let list = object[key]?.arrayValue else {
            throw TokenizerError.missingField(source: source, field: "\(field).\(key)")
        }
        return list
    }

    /// The literal of a `{"String": s}` pattern; `{"Regex": r}` patterns are unsupported here.
    private func literalPattern(_ object: JSONObject, field: String) throws -> String {
        if let string = object["pattern"]?["String"]?.stringValue {
            return string
        }
        if let regex = object["pattern"]?["Regex"]?.stringValue {
            throw TokenizerError.unsupported(
                source: source, field: "\(field).pattern", value: "regex \(regex)")
        }
        throw TokenizerError.missingField(source: source, field: "\(field).pattern")
    }

    private func scalar(_ value: JSONValue?, field: String) throws -> Unicode.Scalar {
        guard let string = value?.stringValue, string.unicodeScalars.count == 1,
            let scalar = string.unicodeScalars.first
        else {
            throw TokenizerError.invalidField(
                source: source, field: field, reason: "expected one character")
        }
        return scalar
    }

    private func prependScheme(_ object: JSONObject, field: String) throws -> PrependScheme {
        if let scheme = object["prepend_scheme"]?.stringValue {
            guard let parsed = PrependScheme(rawValue: scheme) else {
                throw TokenizerError.unsupported(
                    source: source, field: "\(field).prepend_scheme", value: scheme)
            }
            return parsed
        }
        // Files older than prepend_scheme have add_prefix_space.
        return object["add_prefix_space"]?.boolValue ?? true ? .always : .never
    }

    private func makeNormalizer(_ value: JSONValue, field: String) throws -> Normalizer? {
        guard let (type, object) = try typeOf(value, field: field) else { return nil }
        switch type {
        case "Sequence":
            let stages = try list(object, "normalizers", field: field).enumerated().compactMap {
                try makeNormalizer($1, field: "\(field).normalizers[\($0)]")
            }
            return .sequence(stages)
        case "Prepend":
            guard let prefix = object["prepend"]?.stringValue else {
                throw TokenizerError.missingField(source: source, field: "\(field).prepend")
            }
            return .prepend(prefix)
        case "Replace":
            guard let content = object["content"]?.stringValue else {
                throw TokenizerError.missingField(source: source, field: "\(field).content")
            }
            return .replace(pattern: try literalPattern(object, field: field), content: content)
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip":
            return .strip(
                left: object["strip_left"]?.boolValue ?? true,
                right: object["strip_right"]?.boolValue ?? true)
        default:
            throw TokenizerError.unsupported(
                source: source, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    private func makePreTokenizer(_ value: JSONValue, field: String) throws -> PreTokenizer? {
        guard let (type, object) = try typeOf(value, field: field) else { return nil }
        switch type {
        case "Sequence":
            let stages = try list(object, "pretokenizers", field: field).enumerated().compactMap {
                try makePreTokenizer($1, field: "\(field).pretokenizers[\($0)]")
            }
            return .sequence(stages)
        case "ByteLevel":
            return .byteLevel(
                addPrefixSpace: object["add_prefix_space"]?.boolValue ?? false,
                useRegex: object["use_regex"]?.boolValue ?? true)
        case "Digits":
            return .digits(individual: object["individual_digits"]?.boolValue ?? false)
        case "Metaspace":
            return .metaspace(
                replacement: try scalar(object["replacement"], field: "\(field).replacement"),
                prependScheme: try prependScheme(object, field: field),
                split: object["split"]?.boolValue ?? true)
        case "Split":
            let behavior = object["behavior"]?.stringValue ?? "Isolated"
            guard behavior == "Isolated", object["invert"]?.boolValue != true else {
                throw TokenizerError.unsupported(
                    source: source, field: "\(field).behavior", value: behavior)
            }
            guard let regex = object["pattern"]?["Regex"]?.stringValue else {
                throw TokenizerError.unsupported(
                    source: source, field: "\(field).pattern", value: "(not a regex)")
            }
            guard let known = SplitPattern(regex: regex) else {
                throw TokenizerError.unsupported(
                    source: source, field: "\(field).pattern", value: regex)
            }
            return .split(known)
        default:
            throw TokenizerError.unsupported(
                source: source, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    private func makeDecoder(_ value: JSONValue, field: String) throws -> TokenDecoder? {
        guard let (type, object) = try typeOf(value, field: field) else { return nil }
        switch type {
        case "Sequence":
            let steps = try list(object, "decoders", field: field).enumerated().compactMap {
                try makeDecoder($1, field: "\(field).decoders[\($0)]")
            }
            return .sequence(steps)
        case "ByteLevel":
            return .byteLevel
        case "ByteFallback":
            return .byteFallback
        case "Fuse":
            return .fuse
        case "Replace":
            guard let content = object["content"]?.stringValue else {
                throw TokenizerError.missingField(source: source, field: "\(field).content")
            }
            return .replace(pattern: try literalPattern(object, field: field), content: content)
        case "Strip":
            return .strip(
                content: try scalar(object["content"], field: "\(field).content"),
                start: object["start"]?.intValue ?? 0,
                stop: object["stop"]?.intValue ?? 0)
        case "Metaspace":
            return .metaspace(
                replacement: try scalar(object["replacement"], field: "\(field).replacement"),
                prependScheme: try prependScheme(object, field: field))
        default:
            throw TokenizerError.unsupported(
                source: source, field: "\(field).type", value: "\"\(type)\"")
        }
    }

    /// The ids the post-processor puts before and after a single sequence.
    private func makePostProcessor(
        _ value: JSONValue, field: String, tokenIDs: VocabularyIndex
    ) throws -> ([Int], [Int])? {
        guard let (type, object) = try typeOf(value, field: field) else { return nil }
        switch type {
        case "TemplateProcessing":
            let specials = object["special_tokens"]?.objectValue ?? JSONObject()
            var prefix: [Int] = []
            var suffix: [Int] = []
            var seenSequence = false
            for (index, item) in try list(object, "single", field: field).enumerated() {
                if item["Sequence"] != nil {
                    seenSequence = true
                } else if let name = item["SpecialToken"]?["id"]?.stringValue {
                    let ids =
                        specials[name]?["ids"]?.intArrayValue ?? tokenIDs[exact: name].map { [Int($0)] }
                    guard let ids else {
                        throw TokenizerError.invalidField(
                            source: source, field: "\(field).single[\(index)]",
                            reason: "special token \"\(name)\" has no id")
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                }
            }
            return (prefix, suffix)
        case "RobertaProcessing", "BertProcessing":
            func id(_ key: String) throws -> Int {
                guard let pair = object[key]?.arrayValue, pair.count == 2,
                    let id = pair[1].intValue
                else {
                    throw TokenizerError.missingField(source: source, field: "\(field).\(key)")
                }
                return id
            }
            return ([try id("cls")], [try id("sep")])
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            var prefix: [Int] = []
            var suffix: [Int] = []
            for (index, item) in try list(object, "processors", field: field).enumerated() {
                if let (p, s) = try makePostProcessor(
                    item, field: "\(field).processors[\(index)]", tokenIDs: tokenIDs)
                {
                    prefix = p + prefix
                    suffix += s
                }
            }
            return (prefix, suffix)
        default:
            throw TokenizerError.unsupported(
                source: source, field: "\(field).type", value: "\"\(type)\"")
        }
    }
}
