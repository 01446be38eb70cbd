import Foundation

/// A parsed JSON value, for the loosely typed JSON files that come with models: safetensors
/// headers and shard indexes, `config.json`, `tokenizer.json`, `tokenizer_config.json`.
///
/// Read with ``parse(_:duplicateKeys:)``, a hand-written parser, because the alternatives lose
/// information: Foundation's `JSONSerialization` on Linux silently drops every U+FEFF from strings
/// (losing vocabulary entries), `JSONDecoder` reports only "The given data was not valid JSON"
/// and is several times slower on a 10 MB vocabulary, and both turn objects into dictionaries.
///
/// - Strings are kept exactly as written (every Unicode scalar, U+FEFF included, no
///   normalization), and ``==`` compares them by Unicode scalars, not by Swift's canonical
///   equivalence.
/// - Objects are ``JSONObject``s: members in file order, keys compared exactly, so the vocabulary
///   entries `"é"` and `"e\u0301"` stay two members.
/// - Integers and floating-point numbers are kept apart so that `"hidden_size": 64` reads back as
///   an integer: a number written without fraction or exponent that fits an `Int` is ``int(_:)``,
///   every other number ``double(_:)`` (``intValue`` still accepts `2048.0`).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// What ``parse(_:duplicateKeys:)`` does with a key that appears twice in one object (keys
    /// compared exactly).
    public enum DuplicateKeys: Sendable {
        /// Throw a ``ParseError`` at the second occurrence: for formats whose keys are names that
        /// must be unique (safetensors tensors, config keys).
        case reject
        /// Keep the value of the last occurrence, at the position of the first, as Python's
        /// `json` module and serde's maps do (how `tokenizer.json` files are read by their
        /// reference implementation).
        case useLast
    }

    /// Parses UTF-8 JSON text (RFC 8259; surrounding whitespace and a leading UTF-8 byte order
    /// mark allowed).
    ///
    /// Stricter than Foundation where it matters for untrusted files: invalid UTF-8, unpaired
    /// surrogate escapes, unescaped control characters, numbers such as `01` or `1.`, and
    /// nesting deeper than ``maxDepth`` are errors, as are duplicate keys unless
    /// `duplicateKeys` is ``DuplicateKeys/useLast``.
    ///
    /// - Throws: ``ParseError`` with a one-line reason and the byte offset.
    public static func parse(
        _ data: Data, duplicateKeys: DuplicateKeys = .reject
    )
        throws(ParseError) -> JSONValue
    {
        let result = data.withUnsafeBytes { raw in
            Result { () throws(ParseError) in
                var parser = JSONParser(
                    raw.assumingMemoryBound(to: UInt8.self), duplicateKeys: duplicateKeys)
                return try parser.parseDocument()
            }
        }
        return try result.get()
    }

    /// Deepest nesting of arrays and objects that ``parse(_:duplicateKeys:)`` accepts; recursion
    /// is bounded so that hostile input cannot exhaust the stack.
    public static let maxDepth = 256

    /// Why a text is not valid JSON; ``description`` is `"<reason> at byte <offset>"`.
    public struct ParseError: Error, CustomStringConvertible, Sendable, Equatable {
        /// What is wrong, such as `"duplicate key 'a'"`.
        public let reason: String
        /// Byte offset in the text where the problem was found.
        public let offset: Int
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// A short name of the value's kind, for error messages ("integer", "object", …).
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// The member named exactly `key` if this is an object, else nil; chains as
    /// `json["pattern"]?["Regex"]?.stringValue`.
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The value as an `Int`: an integer, or a floating-point number with an exact `Int` value.
    public var intValue: Int? {
        switch self {
        case .int(let v): v
        case .double(let v): Int(exactly: v)
        default: nil
        }
    }

    /// The value as a `Double`: any number.
    public var doubleValue: Double? {
        switch self {
        case .int(let v): Double(v)
        case .double(let v): v
        default: nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }

    public var stringValue: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let v) = self { return v }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let v) = self { return v }
        return nil
    }

    /// An array whose every element is a string, else nil.
    public var stringArrayValue: [String]? {
        arrayValue?.mapAll(\.stringValue)
    }

    /// An array whose every element has an ``intValue``, else nil.
    public var intArrayValue: [Int]? {
        arrayValue?.mapAll(\.intValue)
    }

    /// Same kind and same value; strings are compared by Unicode scalars (`"é"` differs from
    /// `"e\u{301}"`), `.int(2)` differs from `.double(2)`, and objects compare as
    /// ``JSONObject``s do.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.string(let a), .string(let b)): ExactString(a) == ExactString(b)
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a == b
        default: false
        }
    }
}

/// A JSON object: its members in the order of the text, each key once, keys compared exactly.
///
/// Iterating gives `(key, value)` pairs in file order (a vocabulary's order survives). Keys are
/// matched by Unicode scalars, unlike a `[String: _]` dictionary, which would merge keys that are
/// canonically equivalent such as the two vocabulary entries `"é"` and `"e\u{301}"`.
public struct JSONObject:
    Sendable, Equatable, RandomAccessCollection, ExpressibleByDictionaryLiteral
{
    public typealias Element = (key: String, value: JSONValue)

    private var members: [Element] = []
    /// Position of each key in `members`.
    private var positions: [ExactString: Int] = [:]

    /// An empty object.
    public init() {}

    /// An object with these members in this order; the keys must be distinct.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        for (key, value) in elements {
            precondition(updateValue(value, forKey: key) == nil, "duplicate key '\(key)'")
        }
    }

    public var startIndex: Int { members.startIndex }
    public var endIndex: Int { members.endIndex }

    /// The member at a position (file order).
    public subscript(position: Int) -> Element { members[position] }

    /// The value of the member named exactly `key`, or nil if there is none.
    public subscript(key: String) -> JSONValue? {
        positions[ExactString(key)].map { members[$0].value }
    }

    /// Sets the value of `key`: a new key is appended, an existing one keeps its position.
    /// Returns the value it replaces.
    @discardableResult
    public mutating func updateValue(_ value: JSONValue, forKey key: String) -> JSONValue? {
        let exact = ExactString(key)
        // One hash for a new key, the common case; a duplicate puts its position back.
        if let position = positions.updateValue(members.count, forKey: exact) {
            positions[exact] = position
            defer { members[position].value = value }
            return members[position].value
        }
        members.append((key, value))
        return nil
    }

    /// The same keys (compared exactly) with equal values, in any order.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.count == rhs.count && lhs.allSatisfy { rhs[$0.key] == $0.value }
    }
}

/// A recursive-descent parser over the raw UTF-8 bytes; every error carries the byte offset.
private struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let duplicateKeys: JSONValue.DuplicateKeys
    private var index = 0
    private var depth = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>, duplicateKeys: JSONValue.DuplicateKeys) {
        self.bytes = bytes
        self.duplicateKeys = duplicateKeys
        // RFC 8259 §8.1: a parser may ignore a leading byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
    }

    mutating func parseDocument() throws(JSONValue.ParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else {
            throw error("unexpected \(describeCurrent()) after the value")
        }
        return value
    }

    private func error(_ reason: String) -> JSONValue.ParseError {
        JSONValue.ParseError(reason: reason, offset: index)
    }

    private func describeCurrent() -> String {
        guard index < bytes.count else { return "end of input" }
        let byte = bytes[index]
        if byte >= 0x20 && byte < 0x7F {
            return "character '\(Character(Unicode.Scalar(byte)))'"
        }
        return "byte 0x\(String(byte, radix: 16))"
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// Consumes `byte` if it is next.
    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func parseValue() throws(JSONValue.ParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected \(describeCurrent())")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONValue.ParseError) {
        let expected = UnsafeBufferPointer(
            start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in expected {
            guard consume(byte) else {
                throw error("invalid literal, expected '\(literal)'")
            }
        }
    }

    private mutating func enter() throws(JSONValue.ParseError) {
        depth += 1
        guard depth <= JSONValue.maxDepth else {
            throw error("nesting deeper than \(JSONValue.maxDepth)")
        }
    }

    private mutating func parseObject() throws(JSONValue.ParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { return .object(object) }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw error("expected a string key, found \(describeCurrent())")
            }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else {
                throw error("expected ':', found \(describeCurrent())")
            }
            skipWhitespace()
            let value = try parseValue()
            if object.updateValue(value, forKey: key) != nil, duplicateKeys == .reject {
                throw JSONValue.ParseError(reason: "duplicate key '\(key)'", offset: keyOffset)
            }
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in object") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return .object(object)
            default: throw error("expected ',' or '}', found \(describeCurrent())")
            }
        }
    }

    private mutating func parseArray() throws(JSONValue.ParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1  // [
        var array: [JSONValue] = []
        skipWhitespace()
        if consume(UInt8(ascii: "]")) { return .array(array) }
        while true {
            skipWhitespace()
            array.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in array") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(array)
            default: throw error("expected ',' or ']', found \(describeCurrent())")
            }
        }
    }

    /// A string, kept exactly: its UTF-8 is validated, never repaired or normalized.
    private mutating func parseString() throws(JSONValue.ParseError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: most strings have no escape.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            index += 1
        }
        let plain = UnsafeBufferPointer(rebasing: bytes[start..<index])
        if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
            let text = try makeString(plain)
            index += 1
            return text
        }
        var utf8 = Array(plain)
        while true {
            guard index < bytes.count else { throw error("unterminated string") }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let text = try utf8.withUnsafeBufferPointer {
                    (buffer) throws(JSONValue.ParseError) in try makeString(buffer)
                }
                index += 1
                return text
            case UInt8(ascii: "\\"):
                index += 1
                try parseEscape(into: &utf8)
            case 0..<0x20:
                throw error("unescaped control character in string")
            default:
                utf8.append(byte)
                index += 1
            }
        }
    }

    /// `utf8` as a `String`, which must be valid UTF-8. `String(decoding:)` would repair it
    /// silently, so its result is compared with the input (faster than the generic
    /// `String(validating:as:)`).
    private func makeString(
        _ utf8: UnsafeBufferPointer<UInt8>
    ) throws(JSONValue.ParseError)
        -> String
    {
        var text = String(decoding: utf8, as: UTF8.self)
        let exact = text.withUTF8 { decoded in
            decoded.count == utf8.count
                && (utf8.isEmpty
                    || memcmp(decoded.baseAddress!, utf8.baseAddress!, utf8.count) == 0)
        }
        guard exact else { throw error("string is not valid UTF-8") }
        return text
    }

    private mutating func parseEscape(into utf8: inout [UInt8]) throws(JSONValue.ParseError) {
        guard index < bytes.count else { throw error("unterminated string") }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(byte)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4()
            if (0xD800..<0xDC00).contains(scalar) {
                // A high surrogate must be followed by an escaped low surrogate.
                guard consume(UInt8(ascii: "\\")), consume(UInt8(ascii: "u")) else {
                    throw error("unpaired surrogate in \\u escape")
                }
                let low = try parseHex4()
                guard (0xDC00..<0xE000).contains(low) else {
                    throw error("unpaired surrogate in \\u escape")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(scalar) {
                throw error("unpaired surrogate in \\u escape")
            }
            guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
            utf8.append(contentsOf: UTF8.encode(unicode)!)
        default:
            index -= 1
            throw error("invalid escape '\\\(describeCurrent())'")
        }
    }

    private mutating func parseHex4() throws(JSONValue.ParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private mutating func parseNumber() throws(JSONValue.ParseError) -> JSONValue {
        let start = index
        let negative = consume(UInt8(ascii: "-"))
        guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number") }
        // Integers are accumulated directly (vocabularies hold many), as negative numbers so
        // that Int.min fits.
        var integer = 0
        var overflow = false
        if !consume(UInt8(ascii: "0")) {
            while index < bytes.count, isDigit(bytes[index]) {
                let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
                let (next, o2) = times10.subtractingReportingOverflow(Int(bytes[index] - 48))
                overflow = overflow || o1 || o2
                integer = next
                index += 1
            }
        }
        var isInteger = true
        if consume(UInt8(ascii: ".")) {
            isInteger = false
            guard index < bytes.count, isDigit(bytes[index]) else {
                throw error("invalid number: no digit after '.'")
            }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            isInteger = false
            _ = consume(UInt8(ascii: "+")) || consume(UInt8(ascii: "-"))
            guard index < bytes.count, isDigit(bytes[index]) else {
                throw error("invalid number: no digit in exponent")
            }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if isInteger, !overflow {
            if negative { return .int(integer) }
            if integer != .min { return .int(-integer) }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let value = Double(text) else {
            throw JSONValue.ParseError(reason: "invalid number '\(text)'", offset: start)
        }
        return .double(value)
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}

extension JSONValue {
    /// A float32 hyperparameter as the shortest decimal that reads back as it (`1e-05`, not
    /// `9.999999747378752e-06`), as transformers writes it in `config.json`.
    public static func decimal(_ value: Float) -> JSONValue { .double(shortestDecimal(value)) }

    /// The shortest decimal that reads back as `value`, as a double.
    public static func shortestDecimal(_ value: Float) -> Double { Double("\(value)") ?? Double(value) }
}
