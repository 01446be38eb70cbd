import Foundation
import ModelFormats
import Testing

@Suite struct JSONValueTests {
    private func parse(_ text: String) throws -> JSONValue {
        try JSONValue.parse(Data(text.utf8))
    }

    @Test func parsesEveryKindOfValue() throws {
        let value = try parse(
            #" {"i": -12, "d": 1.5e-3, "big": 1e400, "e": 2E2, "s": "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "#
                + #""t": true, "f": false, "n": null, "a": [1, [], {}], "o": {"k": "v"}} "#)
        let object = try #require(value.objectValue)
        #expect(object["i"] == .int(-12))
        #expect(object["d"] == .double(1.5e-3))
        #expect(object["big"] == .double(.infinity))
        #expect(object["e"] == .double(200))
        #expect(object["e"]?.intValue == 200)
        #expect(object["s"] == .string("a\"\\/\u{8}\u{C}\n\r\té😀"))
        #expect(object["t"] == .bool(true) && object["f"] == .bool(false) && object["n"] == .null)
        #expect(object["a"] == .array([.int(1), .array([]), .object([:])]))
        #expect(object["o"] == .object(["k": .string("v")]))
        #expect(try parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try parse("\"ünïcode ✓\"") == .string("ünïcode ✓"))
    }

    @Test(
        "malformed JSON is rejected with the reason and byte offset",
        arguments: [
            (#"{"a": [1, 2"#, "unexpected end of input in array at byte 11"),
            (#"{"a":}"#, "unexpected character '}' at byte 5"),
            ("", "unexpected end of input at byte 0"),
            (#"{"a": 1} x"#, "unexpected character 'x' after the value at byte 9"),
            (#"{"a": 1, "a": 2}"#, "duplicate key 'a' at byte 9"),
            (#"{a: 1}"#, "expected a string key, found character 'a' at byte 1"),
            (#"[01]"#, "expected ',' or ']', found character '1' at byte 2"),
            (#"[1.]"#, "invalid number: no digit after '.' at byte 3"),
            (#"[tru]"#, "invalid literal, expected 'true' at byte 4"),
            ("\"a\u{1}\"", "unescaped control character in string at byte 2"),
            (#""\x""#, #"invalid escape '\character 'x'' at byte 2"#),
            (#""\ud800""#, "unpaired surrogate in \\u escape at byte 7"),
            (#""abc"#, "unterminated string at byte 4"),
        ])
    func rejectsMalformedJSON(text: String, message: String) throws {
        let error = #expect(throws: JSONValue.ParseError.self) { try parse(text) }
        #expect(error?.description == message)
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() throws {
        let badUTF8 = #expect(throws: JSONValue.ParseError.self) {
            try JSONValue.parse(Data([0x22, 0xFF, 0x22]))
        }
        #expect(badUTF8?.reason == "string is not valid UTF-8")
        let deep = String(repeating: "[", count: JSONValue.maxDepth + 1)
        let tooDeep = #expect(throws: JSONValue.ParseError.self) { try parse(deep) }
        #expect(tooDeep?.reason == "nesting deeper than \(JSONValue.maxDepth)")
        let ok = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
        #expect(try parse(ok).arrayValue?.count == 1)
    }

    /// Strings and keys are kept to the Unicode scalar: no U+FEFF dropped (as Linux
    /// `JSONSerialization` does), no canonically equivalent keys merged, members in file order.
    @Test func keepsStringsKeysAndOrderExactly() throws {
        let text =
            #"{"\ufeffa": "\ufeff", "z": 0, "\u00e9": 1, "e\u0301": 2, "raw": ""#
            + "\u{FEFF}x\"}"  // U+FEFF written raw, not escaped
        let value = try parse("\u{FEFF}" + text)  // a leading byte order mark is skipped
        let object = try #require(value.objectValue)
        #expect(
            object.map { Array($0.key.unicodeScalars) } == [
                ["\u{FEFF}", "a"], ["z"], ["\u{E9}"], ["e", "\u{301}"], ["r", "a", "w"],
            ])
        #expect(object["\u{FEFF}a"] == .string("\u{FEFF}"))
        #expect(object["a"] == nil)
        #expect(object["\u{E9}"] == .int(1) && object["e\u{301}"] == .int(2))
        #expect(object["raw"]?.stringValue?.unicodeScalars.first == "\u{FEFF}")
        // Equality is exact too; object equality ignores member order.
        #expect(JSONValue.string("\u{E9}") != .string("e\u{301}"))
        #expect(JSONValue.object(["a": .int(1), "b": .null]) == .object(["b": .null, "a": .int(1)]))
        #expect(JSONValue.int(2) != .double(2))
        // A byte order mark is allowed before the document only.
        let late = #expect(throws: JSONValue.ParseError.self) { try parse("1 \u{FEFF}") }
        #expect(late?.description == "unexpected byte 0xef after the value at byte 2")
    }

    @Test func duplicateKeysAreRejectedOrTheLastWins() throws {
        let text = #"{"a": 1, "b": 2, "a": 3}"#
        let error = #expect(throws: JSONValue.ParseError.self) { try parse(text) }
        #expect(error?.description == "duplicate key 'a' at byte 17")
        let lastWins = try JSONValue.parse(Data(text.utf8), duplicateKeys: .useLast)
        let object = try #require(lastWins.objectValue)
        #expect(object.map(\.key) == ["a", "b"])
        #expect(object["a"] == .int(3))
    }

    @Test func arrayAccessorsAndIntegerLimits() throws {
        let value = try parse(
            #"{"n": [1, 2.0, -3], "s": ["x", "y"], "m": [1, "x"], "o": {"k": null}}"#)
        #expect(value["n"]?.intArrayValue == [1, 2, -3])
        #expect(value["s"]?.stringArrayValue == ["x", "y"])
        #expect(value["m"]?.intArrayValue == nil && value["m"]?.stringArrayValue == nil)
        #expect(value["o"]?["k"] == .null)
        #expect(value["n"]?["k"] == nil)
        #expect(try parse("-9223372036854775808") == .int(.min))
        #expect(try parse("9223372036854775807") == .int(.max))
        #expect(try parse("-0") == .int(0))
    }
}
