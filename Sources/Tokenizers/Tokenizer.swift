/// A text tokenizer: text to token ids and back, plus the special tokens generation needs.
///
/// Model code depends only on this protocol (the mlx-swift-lm seam), so it never sees which file
/// format or algorithm produced the ids. Get one from `Tokenizers.load(ggufMetadata:source:)` or
/// `Tokenizers.load(tokenizerJSON:configJSON:)`.
///
/// Conforming types are immutable values; `encode` and `decode` may be called from several threads
/// at once.
public protocol Tokenizer: Sendable {
    /// The token ids of `text`.
    ///
    /// - Parameter addSpecialTokens: add what the tokenizer's post-processor adds around a single
    ///   sequence (BOS and/or EOS, see ``addsBOS`` and ``addsEOS``). Special tokens written inline
    ///   in `text` (such as `<|im_start|>`) are always recognised, whatever this flag says.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int]

    /// The text of `ids`. Ids outside the vocabulary are skipped.
    ///
    /// - Parameter skipSpecialTokens: leave out the tokens marked special (BOS, EOS, chat markers).
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String

    /// The vocabulary entry of `id` as it is stored (byte-level tokens in their GPT-2 spelling, such
    /// as `Ġthe`; SentencePiece tokens with `▁`), or nil if `id` is out of range.
    func tokenString(_ id: Int) -> String?

    /// The id of a vocabulary entry or added token spelled exactly `token`, or nil.
    func id(of token: String) -> Int?

    /// One more than the largest token id (model vocabulary and added tokens).
    var vocabularySize: Int { get }

    /// The beginning-of-sequence token, if the tokenizer names one.
    var bosTokenID: Int? { get }

    /// The end-of-sequence token, if the tokenizer names one.
    var eosTokenID: Int? { get }

    /// The unknown token, if the tokenizer names one.
    var unknownTokenID: Int? { get }

    /// The padding token, if the tokenizer names one.
    var paddingTokenID: Int? { get }

    /// Whether `encode(_:addSpecialTokens: true)` puts ``bosTokenID`` first.
    var addsBOS: Bool { get }

    /// Whether `encode(_:addSpecialTokens: true)` puts ``eosTokenID`` last.
    var addsEOS: Bool { get }

    /// Every token marked special (control tokens), which `decode(_:skipSpecialTokens: true)` drops.
    var specialTokenIDs: Set<Int> { get }

    /// Tokens that end a generated turn: EOS plus the end-of-turn markers the vocabulary has
    /// (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, `<end_of_turn>`, ...), as llama.cpp collects
    /// its end-of-generation set.
    var stopTokenIDs: Set<Int> { get }

    /// The raw chat template (Jinja) from the file, if it has one. Rendering is not done here.
    var chatTemplate: String? { get }
}

extension Tokenizer {
    /// The token ids of `text`, with the special tokens the tokenizer adds by default.
    public func encode(_ text: String) -> [Int] {
        encode(text, addSpecialTokens: true)
    }

    /// The text of `ids`, special tokens included.
    public func decode(_ ids: [Int]) -> String {
        decode(ids, skipSpecialTokens: false)
    }
}
