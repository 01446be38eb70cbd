import Foundation

/// A parsed JSON document, for the loosely typed `tokenizer.json` format.
///
/// Parsed by hand rather than with `JSONSerialization`, which on Linux silently drops every U+FEFF
/// from strings (losing vocabulary entries), or with `JSONDecoder` into an enum, which is several
/// times slower on a 10 MB vocabulary.
enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// Parses `data`; `source` names it in the error.
    static func parse(_ data: Data, source: String) throws -> JSONValue {
        let bytes = [UInt8](data)
        var parser = JSONParser(bytes: bytes)
        do {
            return try parser.parseDocument()
        } catch {
            throw TokenizerError.unreadable(
                source: source, reason: "invalid JSON at byte \(error.offset): \(error.message)")
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    var string: String? {
        if case .string(let string) = self { return string }
        return nil
    }

    var bool: Bool? {
        if case .bool(let bool) = self { return bool }
        return nil
    }

    var double: Double? {
        if case .number(let number) = self { return number }
        return nil
    }

    /// The number, if it is an integer.
    var int: Int? {
        guard case .number(let number) = self, let int = Int(exactly: number) else { return nil }
        return int
    }

    var array: [JSONValue]? {
        if case .array(let array) = self { return array }
        return nil
    }

    var object: JSONObject? {
        if case .object(let object) = self { return object }
        return nil
    }

    var strings: [String]? {
        array.flatMap { items in
            let strings = items.compactMap(\.string)
            return strings.count == items.count ? strings : nil
        }
    }

    var ints: [Int]? {
        array.flatMap { items in
            let ints = items.compactMap(\.int)
            return ints.count == items.count ? ints : nil
        }
    }
}

/// A JSON object: its members in file order, keys kept exactly (a `[String: _]` dictionary would
/// merge keys that are canonically equivalent, such as two vocabulary entries `"é"` and `"e\u{301}"`).
struct JSONObject: Sendable {
    var pairs: [(key: String, value: JSONValue)]

    /// The value of the last member named exactly `key`.
    subscript(key: String) -> JSONValue? {
        pairs.last { $0.key.utf8.elementsEqual(key.utf8) }?.value
    }
}

/// A recursive-descent JSON parser over UTF-8 bytes (RFC 8259).
private struct JSONParser {
    struct Failure: Error {
        var offset: Int
        var message: String
    }

    let bytes: [UInt8]
    var position = 0
    var depth = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte order mark before the document is allowed.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    mutating func parseDocument() throws(Failure) -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        guard position == bytes.count else { throw fail("trailing characters") }
        return value
    }

    private func fail(_ message: String) -> Failure {
        Failure(offset: position, message: message)
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(Failure)
        -> JSONValue
    {
        let count = literal.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw fail("unexpected end") }
        let matches = literal.withUTF8Buffer { buffer in
            bytes[position..<(position + count)].elementsEqual(buffer)
        }
        guard matches else { throw fail("unknown literal") }
        position += count
        return value
    }

    private mutating func parseValue() throws(Failure) -> JSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        default: return try parseNumber()
        }
    }

    private mutating func parseObject() throws(Failure) -> JSONValue {
        depth += 1
        guard depth < 512 else { throw fail("nested too deeply") }
        defer { depth -= 1 }
        position += 1
        var object = JSONObject(pairs: [])
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw fail("expected a key")
            }
            let key = try parseString()
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw fail("expected ':'")
            }
            position += 1
            object.pairs.append((key, try parseValue()))
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
            } else if bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(object)
            } else {
                throw fail("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray() throws(Failure) -> JSONValue {
        depth += 1
        guard depth < 512 else { throw fail("nested too deeply") }
        defer { depth -= 1 }
        position += 1
        var array: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(array)
        }
        while true {
            array.append(try parseValue())
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
            } else if bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(array)
            } else {
                throw fail("expected ',' or ']'")
            }
        }
    }

    private mutating func parseNumber() throws(Failure) -> JSONValue {
        let start = position
        while position < bytes.count && Self.isNumberByte(bytes[position]) {
            position += 1
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        guard position > start, let number = Double(text) else {
            position = start
            throw fail("invalid value")
        }
        return .number(number)
    }

    private static func isNumberByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"),
            UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"):
            true
        default:
            false
        }
    }

    private mutating func parseString() throws(Failure) -> String {
        position += 1
        let start = position
        // Fast path: no escapes.
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let string = String(decoding: bytes[start..<position], as: UTF8.self)
                position += 1
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            position += 1
        }
        var buffer = Array(bytes[start..<position])
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if byte == UInt8(ascii: "\"") {
                return String(decoding: buffer, as: UTF8.self)
            }
            guard byte == UInt8(ascii: "\\") else {
                buffer.append(byte)
                continue
            }
            guard position < bytes.count else { break }
            let escape = bytes[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""): buffer.append(0x22)
            case UInt8(ascii: "\\"): buffer.append(0x5C)
            case UInt8(ascii: "/"): buffer.append(0x2F)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code), position + 1 < bytes.count,
                    bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u")
                {
                    position += 2
                    let low = try parseHex4()
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        appendUTF8("\u{FFFD}", to: &buffer)
                        code = low
                    }
                }
                appendUTF8(Unicode.Scalar(code) ?? "\u{FFFD}", to: &buffer)
            default:
                throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    private mutating func parseHex4() throws(Failure) -> UInt32 {
        guard position + 4 <= bytes.count else { throw fail("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"):
                digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"):
                digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            value = value * 16 + digit
            position += 1
        }
        return value
    }
}
