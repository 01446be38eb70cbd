/// The decoder stage: turns token strings back into text (port of the HF tokenizers `decoders`
/// that BPE models use). Each step maps a list of strings to a list of strings, as HF's
/// `decode_chain` does, and the result is their concatenation.
public enum TokenDecoder: Sendable {
    /// GPT-2 byte level: each token's alphabet scalars back to bytes, all bytes joined, then
    /// decoded as UTF-8 with invalid sequences replaced by U+FFFD.
    case byteLevel
    /// Replaces `pattern` with `content` in each token (`▁` to a space).
    case replace(pattern: String, content: String)
    /// Runs of `<0xNN>` tokens become their bytes decoded as UTF-8; a run that is not valid UTF-8
    /// becomes one U+FFFD per byte.
    case byteFallback
    /// All tokens joined into one.
    case fuse
    /// Removes up to `start` leading and `stop` trailing `content` scalars from each token.
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    /// SentencePiece style: `▁` to spaces, except that the first token loses its `▁`s unless the
    /// scheme is `never`.
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme)
    /// Each step in turn.
    case sequence([TokenDecoder])

    func decode(_ tokens: [String]) -> String {
        chain(tokens).joined()
    }

    func chain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                bytes.append(contentsOf: ByteLevel.bytes(of: token))
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { Self.replacing(pattern, with: content, in: $0) }
        case .byteFallback:
            return Self.byteFallback(tokens)
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var scalars = Array(token.unicodeScalars)
                var removed = 0
                while removed < start, scalars.first == content {
                    scalars.removeFirst()
                    removed += 1
                }
                removed = 0
                while removed < stop, scalars.last == content {
                    scalars.removeLast()
                    removed += 1
                }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                return String(view)
            }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { index, token in
                var view = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar == replacement {
                        if index == 0 && scheme != .never { continue }
                        view.append(" ")
                    } else {
                        view.append(scalar)
                    }
                }
                return String(view)
            }
        case .sequence(let steps):
            return steps.reduce(tokens) { $1.chain($0) }
        }
    }

    private static func replacing(
        _ pattern: String, with content: String, in token: String
    )
        -> String
    {
        guard !pattern.isEmpty, token.unicodeScalars.contains(pattern.unicodeScalars.first ?? " ")
        else {
            return token
        }
        return Normalizer.replace(pattern: pattern, content: content).normalize(token)
    }

    /// The byte a `<0xNN>` token stands for, if `token` is one.
    static func fallbackByte(_ token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, utf8[0] == UInt8(ascii: "<"), utf8[1] == UInt8(ascii: "0"),
            utf8[2] == UInt8(ascii: "x"), utf8[5] == UInt8(ascii: ">")
        else { return nil }
        return UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
    }

    private static func byteFallback(_ tokens: [String]) -> [String] {
        var result: [String] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            if isValidUTF8(pending) {
                result.append(String(decoding: pending, as: UTF8.self))
            } else {
                result.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
            }
            pending.removeAll()
        }
        for token in tokens {
            if let byte = fallbackByte(token) {
                pending.append(byte)
            } else {
                flush()
                result.append(token)
            }
        }
        flush()
        return result
    }
}

/// Whether `bytes` is well-formed UTF-8. (Foundation's `String(bytes:encoding:)` would also do,
/// but on Linux it drops a leading U+FEFF.)
func isValidUTF8(_ bytes: [UInt8]) -> Bool {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}
