import ModelFormats

/// A BPE tokenizer assembled from the HF pipeline stages, one per file: added tokens
/// (`AddedTokens.swift`), ``Normalizer``, ``PreTokenizer``, the BPE model (`BPEModel.swift`), the
/// post-processor (``prefix``/``suffix``) and ``TokenDecoder``.
///
/// Both loaders build this type: GGUF metadata (byte-level `gpt2` and SentencePiece `llama`
/// vocabularies) and `tokenizer.json` (BPE, byte-level or with byte fallback).
public struct BPETokenizer: Tokenizer {
    /// Token strings by id (model vocabulary and added tokens).
    let tokens: [String]
    /// The model's vocabulary by id as given ("" for ids it lacks), and the added tokens, kept
    /// to write the tokenizer back out (`TokenizerJSONWriter.swift`).
    let vocabulary: [String]
    let addedTokenList: [AddedToken]
    /// Each token's id, as the loader resolved it (an added token's own id for its content).
    let tokenIDs: VocabularyIndex
    let addedTokens: AddedTokenMatcher
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    /// What the post-processor puts before and after a single sequence.
    public let prefix: [Int]
    public let suffix: [Int]
    let decoder: TokenDecoder?

    public let bosTokenID: Int?
    public let eosTokenID: Int?
    public let unknownTokenID: Int?
    public let paddingTokenID: Int?
    public let specialTokenIDs: Set<Int>
    public let stopTokenIDs: Set<Int>
    public let chatTemplate: String?

    /// Special tokens by the name a config gives them (`bos_token`, ...), for the loaders.
    struct SpecialIDs {
        var bos: Int?
        var eos: Int?
        var unknown: Int?
        var padding: Int?
        /// Extra end-of-generation ids (GGUF `eot`/`eom` token ids).
        var endOfTurn: [Int] = []
    }

    init(
        tokens: [String], tokenIDs: VocabularyIndex, addedTokens: [AddedToken], normalizer: Normalizer?,
        preTokenizer: PreTokenizer?, model: BPEModel, prefix: [Int], suffix: [Int],
        decoder: TokenDecoder?, special: SpecialIDs, chatTemplate: String?
    ) {
        self.vocabulary = tokens
        self.addedTokenList = addedTokens
        // One array serves both when no added token changes the vocabulary, as in every GGUF file
        // (0.8 MB on SmolLM2's 49,152 tokens). The test is outside the loop that writes, whose
        // copy-on-write check the optimiser hoists before it.
        let overrides = addedTokens.filter { token in
            token.id >= 0
                && (token.id >= tokens.count
                    || !tokens[token.id].unicodeScalars.elementsEqual(token.content.unicodeScalars))
        }
        let tokens = overrides.isEmpty ? tokens : Self.tokens(tokens, overriddenBy: overrides)
        self.tokens = tokens
        // The loaders' own index, which they need to read the merges: not a second table.
        self.tokenIDs = tokenIDs
        self.addedTokens = AddedTokenMatcher(tokens: addedTokens, normalizer: normalizer)
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.prefix = prefix
        self.suffix = suffix
        self.decoder = decoder
        self.bosTokenID = special.bos
        self.eosTokenID = special.eos
        self.unknownTokenID = special.unknown
        self.paddingTokenID = special.padding
        self.specialTokenIDs = Set(addedTokens.filter(\.special).map(\.id))
        self.chatTemplate = chatTemplate

        // llama.cpp's end-of-generation set: EOS, EOT/EOM, and control tokens with these names.
        var stops = Set(special.endOfTurn)
        if let eos = special.eos { stops.insert(eos) }
        let endMarkers = [
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
            "<EOT>", "_<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>",
        ]
        for marker in endMarkers {
            if let id = tokenIDs[exact: marker].map(Int.init), specialTokenIDs.contains(id) { stops.insert(id) }
        }
        self.stopTokenIDs = stops
    }

    /// The vocabulary with the added tokens written at their ids (after its end, padded with "").
    private static func tokens(_ vocabulary: [String], overriddenBy added: [AddedToken]) -> [String] {
        var tokens = vocabulary
        for token in added {
            if token.id >= tokens.count {
                tokens.append(contentsOf: repeatElement("", count: token.id + 1 - tokens.count))
            }
            tokens[token.id] = token.content
        }
        return tokens
    }

    public var vocabularySize: Int { tokens.count }
    public var addsBOS: Bool { bosTokenID.map { prefix.contains($0) } ?? false }
    public var addsEOS: Bool { eosTokenID.map { suffix.contains($0) } ?? false }

    public func tokenString(_ id: Int) -> String? {
        tokens.indices.contains(id) ? tokens[id] : nil
    }

    public func id(of token: String) -> Int? {
        tokenIDs[exact: token].map(Int.init)
    }

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = addSpecialTokens ? prefix : []
        ids.reserveCapacity(text.utf8.count / 3 + prefix.count + suffix.count)
        var words: [TextPiece] = []
        for segment in addedTokens.segments(of: text, normalizer: normalizer) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let piece):
                words.removeAll(keepingCapacity: true)
                if let preTokenizer {
                    preTokenizer.split(piece, into: &words)
                } else {
                    words.append(piece)
                }
                for word in words {
                    model.tokenize(word.scalars, into: &ids)
                }
            }
        }
        if addSpecialTokens {
            ids.append(contentsOf: suffix)
        }
        return ids
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        let strings = ids.compactMap { id -> String? in
            guard tokens.indices.contains(id), !(skipSpecialTokens && specialTokenIDs.contains(id))
            else {
                return nil
            }
            return tokens[id]
        }
        return decoder?.decode(strings) ?? strings.joined()
    }
}
