/// Turns generated token ids into text as they arrive, emitting only complete characters.
///
/// A token may end in the middle of a UTF-8 character (byte-fallback `<0xE6>` tokens, byte-level
/// tokens that split an emoji), and some decoders look at neighbours (SentencePiece drops the
/// leading space of the first token only). So each step decodes the new tokens together with the
/// tokens emitted last (at most a character's worth), and emits what that adds to the text; while
/// the result still ends in U+FFFD (an unfinished character) the tokens wait for the next ones.
/// Cost per token is a decode of a handful of tokens, whatever the length of the generation.
///
/// ```swift
/// var stream = StreamingDetokenizer(tokenizer: tokenizer)
/// for id in generatedIDs { print(stream.append(id), terminator: "") }
/// print(stream.finish())
/// ```
///
/// Concatenating every `append` result and `finish()` gives the scalars of
/// `tokenizer.decode(ids, skipSpecialTokens:)` for the same ids.
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: any Tokenizer
    public let skipSpecialTokens: Bool
    /// The tokens emitted last (less skipped ones), kept as context for the next decode.
    private var context: [Int] = []
    /// Tokens whose text has not been emitted yet.
    private var pending: [Int] = []

    /// After this many waiting tokens a trailing U+FFFD is taken as real (an invalid byte sequence
    /// from the model) and emitted. A character has at most 4 bytes, but byte-level tokens can
    /// each end inside a different character, so the bound is generous.
    private static let maxPending = 16

    public init(tokenizer: any Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one generated token; returns the text it completes (often empty).
    public mutating func append(_ id: Int) -> String {
        pending.append(id)
        return emit(final: false)
    }

    /// Emits whatever is still waiting, with U+FFFD for an unfinished character.
    public mutating func finish() -> String {
        emit(final: true)
    }

    private mutating func emit(final: Bool) -> String {
        guard !pending.isEmpty else { return "" }
        let base = tokenizer.decode(context, skipSpecialTokens: skipSpecialTokens).unicodeScalars
        let full = tokenizer.decode(context + pending, skipSpecialTokens: skipSpecialTokens)
            .unicodeScalars
        if !final && full.last == "\u{FFFD}" && pending.count < Self.maxPending {
            return ""
        }
        var added = String.UnicodeScalarView()
        if full.starts(with: base) {
            added.append(contentsOf: full.dropFirst(base.count))
        } else {
            // The decoder rewrote the context's text; emit the pending tokens on their own.
            added.append(
                contentsOf: tokenizer.decode(pending, skipSpecialTokens: skipSpecialTokens)
                    .unicodeScalars)
        }
        // The tokens just emitted become the context. The whole group, not just its last token:
        // HF's ByteFallback decodes a run of `<0xNN>` tokens all or nothing, so a context that
        // began inside a character's bytes would turn the next characters into U+FFFD. Skipped
        // special tokens decode to nothing and are no use as context.
        let group = pending.filter { !skipSpecialTokens || !tokenizer.specialTokenIDs.contains($0) }
        if !group.isEmpty {
            context = group
        }
        pending.removeAll()
        return String(added)
    }
}
