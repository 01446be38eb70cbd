/// A string compared and hashed by its Unicode scalars (UTF-8 bytes), for keys that must be told
/// apart exactly: JSON object keys and tokenizer vocabularies.
///
/// Swift's `String` equality is canonical equivalence: `"\u{2001}" == "\u{2003}"` and
/// `"e\u{301}" == "é"` are true. Tokenizers must tell those apart (they are different bytes and
/// different tokens), so every vocabulary and cache key is wrapped in this type.
///
/// `package`, not public: shared by the modules of this package, not part of their API.
package struct ExactString: Hashable, Sendable {
    package let string: String

    package init(_ string: String) {
        self.string = string
    }

    package static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.string.utf8.elementsEqual(rhs.string.utf8)
    }

    package func hash(into hasher: inout Hasher) {
        var copy = string
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

extension Dictionary where Key == ExactString {
    package subscript(exact key: String) -> Value? {
        get { self[ExactString(key)] }
        set { self[ExactString(key)] = newValue }
    }
}
