/// GPT-2's reversible map between bytes and printable Unicode scalars.
///
/// Byte-level BPE vocabularies spell every token in this alphabet (a space is `Ġ`, a newline `Ċ`),
/// so any byte string has a spelling and nothing is ever unknown. Port of `bytes_to_unicode` in
/// openai/gpt-2 `src/encoder.py`.
enum ByteLevel {
    /// The scalar that spells each byte.
    static let scalarForByte: [Unicode.Scalar] = {
        var bytes: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var scalars = bytes
        var extra = 0
        for byte in 0..<256 where !bytes.contains(byte) {
            bytes.append(byte)
            scalars.append(256 + extra)
            extra += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (byte, scalar) in zip(bytes, scalars) {
            table[byte] = Unicode.Scalar(UInt32(scalar)) ?? " "
        }
        return table
    }()

    /// The byte each alphabet scalar spells.
    static let byteForScalar: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (byte, scalar) in scalarForByte.enumerated() {
            map[scalar.value] = UInt8(byte)
        }
        return map
    }()

    /// Whether every scalar of `text` is in the byte-level alphabet.
    static func isSpelledInAlphabet(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { byteForScalar[$0.value] != nil }
    }

    /// The byte-level spelling of some bytes.
    static func spell<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var result = String.UnicodeScalarView()
        for byte in bytes {
            result.append(scalarForByte[Int(byte)])
        }
        return String(result)
    }

    /// The bytes a token spelled in the alphabet stands for. A token with any other scalar (an
    /// added token such as `hello world`) stands for its own UTF-8, as in HF's ByteLevel decoder.
    static func bytes(of token: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = byteForScalar[scalar.value] else {
                return Array(token.utf8)
            }
            bytes.append(byte)
        }
        return bytes
    }
}
