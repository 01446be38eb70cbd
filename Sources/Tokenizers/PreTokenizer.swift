/// A piece of text on its way through the pipeline, as Unicode scalars.
struct TextPiece {
    var scalars: [Unicode.Scalar]
    /// Whether the piece starts at offset 0 of the original text; Metaspace's `prepend_scheme:
    /// first` adds its `▁` only there.
    var isFirst: Bool
}

/// Where Metaspace adds its leading `▁` (HF `PrependScheme`).
public enum PrependScheme: String, Sendable {
    /// Before every piece that does not already start with `▁`.
    case always
    /// Only before the piece at the start of the text (not after an added token).
    case first
    /// Never.
    case never
}

/// The pre-tokenizer stage: splits normalized text into the words that BPE runs on (port of the
/// HF tokenizers `pre_tokenizers` the supported models use).
public enum PreTokenizer: Sendable {
    /// A regex split, each match its own piece (`Split(pattern, behavior: isolated)`).
    case split(SplitPattern)
    /// Numbers split off: each `\p{N}` alone when `individual`, runs of them otherwise.
    case digits(individual: Bool)
    /// Byte-level: optionally a leading space, then optionally the GPT-2 regex. Marks the model
    /// input as bytes (the byte-to-alphabet mapping itself happens in the model stage).
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// SentencePiece style: spaces become `replacement` (`▁`), a leading one is added per
    /// `prependScheme`, and with `split` each `▁` starts a new piece.
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    /// Each stage applied to the pieces of the previous one.
    case sequence([PreTokenizer])

    /// What llama.cpp's `smollm` (and `starcoder`, `refact`, ...) pre-type does: every number on its
    /// own, then the GPT-2 regex. SmolLM2's own `tokenizer.json` is this pair.
    public static let smollm = PreTokenizer.sequence([
        .digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true),
    ])

    /// Whether the model should see the pieces as UTF-8 bytes (GPT-2 byte-level BPE).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: true
        case .sequence(let stages): stages.contains { $0.isByteLevel }
        default: false
        }
    }

    /// Splits `piece` into words, appending them to `words`. Empty pieces are dropped, as in HF.
    func split(_ piece: TextPiece, into words: inout [TextPiece]) {
        switch self {
        case .split(let pattern):
            Self.cut(piece, at: pattern.pieceEnds(piece.scalars), into: &words)
        case .digits(let individual):
            Self.cut(piece, at: Self.digitEnds(piece.scalars, individual: individual), into: &words)
        case .byteLevel(let addPrefixSpace, let useRegex):
            var piece = piece
            if addPrefixSpace && piece.scalars.first != " " {
                piece.scalars.insert(" ", at: 0)
            }
            if useRegex {
                Self.cut(piece, at: SplitPattern.gpt2.pieceEnds(piece.scalars), into: &words)
            } else if !piece.scalars.isEmpty {
                words.append(piece)
            }
        case .metaspace(let replacement, let scheme, let split):
            var scalars = piece.scalars.map { $0 == " " ? replacement : $0 }
            let prepend: Bool
            switch scheme {
            case .always: prepend = scalars.first != replacement
            case .first: prepend = piece.isFirst && scalars.first != replacement
            case .never: prepend = false
            }
            if prepend {
                scalars.insert(replacement, at: 0)
            }
            let replaced = TextPiece(scalars: scalars, isFirst: piece.isFirst)
            if split {
                // MergedWithNext: each `▁` begins a piece.
                var ends: [Int] = []
                for (k, scalar) in scalars.enumerated() where scalar == replacement && k > 0 {
                    ends.append(k)
                }
                ends.append(scalars.count)
                Self.cut(replaced, at: ends, into: &words)
            } else if !scalars.isEmpty {
                words.append(replaced)
            }
        case .sequence(let stages):
            var current = [piece]
            for stage in stages {
                var next: [TextPiece] = []
                for p in current {
                    stage.split(p, into: &next)
                }
                current = next
            }
            words.append(contentsOf: current.filter { !$0.scalars.isEmpty })
        }
    }

    /// Cuts `piece` at the given end offsets; only the first cut keeps `isFirst`.
    private static func cut(_ piece: TextPiece, at ends: [Int], into words: inout [TextPiece]) {
        var start = 0
        for end in ends where end > start {
            words.append(
                TextPiece(
                    scalars: Array(piece.scalars[start..<end]), isFirst: piece.isFirst && start == 0
                ))
            start = end
        }
    }

    /// Piece ends for the Digits pre-tokenizer (HF splits on `char::is_numeric`, i.e. `\p{N}`).
    private static func digitEnds(_ s: [Unicode.Scalar], individual: Bool) -> [Int] {
        var ends: [Int] = []
        var i = 0
        while i < s.count {
            let isNumber = CharacterClass.of(s[i]) == .number
            var end = i + 1
            if !isNumber || !individual {
                while end < s.count && (CharacterClass.of(s[end]) == .number) == isNumber {
                    end += 1
                }
            }
            ends.append(end)
            i = end
        }
        return ends
    }
}
