/// A string compared and hashed by its Unicode scalars (UTF-8 bytes), for vocabulary lookups.
///
/// Swift's `String` equality is canonical equivalence: `"\u{2001}" == "\u{2003}"` and
/// `"e\u{301}" == "é"` are true. Tokenizers must tell those apart (they are different bytes and
/// different tokens), so every vocabulary and cache key is wrapped in this type.
struct ExactString: Hashable, Sendable {
    let string: String

    init(_ string: String) {
        self.string = string
    }

    static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.string.utf8.elementsEqual(rhs.string.utf8)
    }

    func hash(into hasher: inout Hasher) {
        var copy = string
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

extension Dictionary where Key == ExactString {
    subscript(exact key: String) -> Value? {
        get { self[ExactString(key)] }
        set { self[ExactString(key)] = newValue }
    }
}
