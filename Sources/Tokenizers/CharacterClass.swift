/// The four classes the pre-tokenizer regexes distinguish: `\p{L}`, `\p{N}`, `\s`, and the rest.
enum CharacterClass: UInt8 {
    case letter, number, whitespace, other

    /// The class of a scalar: letters are general categories Lu, Ll, Lt, Lm, Lo; numbers Nd, Nl,
    /// No; whitespace is the Unicode White_Space property, which is what Oniguruma's `\s` (the
    /// regex engine of HF tokenizers) matches.
    @inline(__always)
    static func of(_ scalar: Unicode.Scalar) -> CharacterClass {
        let value = scalar.value
        if value < 0x80 {
            return CharacterClass(rawValue: asciiTable[Int(value)]) ?? .other
        }
        if value < 0x10000 {
            return CharacterClass(rawValue: bmpTable[Int(value)]) ?? .other
        }
        return classify(scalar)
    }

    private static let asciiTable: [UInt8] = (0..<0x80).map { value in
        classify(Unicode.Scalar(UInt8(value))).rawValue
    }

    /// Classes of the Basic Multilingual Plane, computed on first use of a non-ASCII scalar (about
    /// 5 ms): the property lookups would otherwise be the slowest part of pre-tokenizing.
    private static let bmpTable: [UInt8] = (0..<0x10000).map { value in
        guard let scalar = Unicode.Scalar(UInt32(value)) else {
            return CharacterClass.other.rawValue
        }
        return classify(scalar).rawValue
    }

    private static func classify(_ scalar: Unicode.Scalar) -> CharacterClass {
        let properties = scalar.properties
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return properties.isWhitespace ? .whitespace : .other
        }
    }
}
