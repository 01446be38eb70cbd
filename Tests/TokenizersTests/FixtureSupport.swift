import Foundation
import ModelFormats
import Testing

@testable import Tokenizers

enum FixtureError: Error {
    case wrongType(String)
}

/// The fixtures written by Scripts/golden/make_tokenizer_fixtures.py.
enum Fixtures {
    static let directory: URL = {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            preconditionFailure("Fixtures folder missing from the test bundle")
        }
        return url
    }()

    static func url(_ name: String) -> URL {
        directory.appendingPathComponent(name)
    }

    /// A fixture parsed with the library's JSON reader (JSONSerialization drops U+FEFF on Linux).
    static func json(_ name: String) throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: url(name)))
    }

    /// The shared test strings.
    static let strings: [String] = {
        (try? json("strings.json").stringArrayValue) ?? []
    }()

    /// A `*-gguf-metadata.json` fixture as the GGUF reader would return it.
    static func ggufMetadata(_ name: String) throws -> [String: GGUFValue] {
        let object = try #require(try json(name).objectValue)
        var metadata: [String: GGUFValue] = [:]
        for (key, entry) in object where !key.hasPrefix("_") {
            metadata[key] = try ggufValue(entry, key: key)
        }
        return metadata
    }

    private static func scalar(_ type: String, _ value: JSONValue, key: String) throws -> GGUFValue {
        switch type {
        case "string": return .string(try #require(value.stringValue, "\(key)"))
        case "bool":
            guard case .bool(let bool) = value else { throw FixtureError.wrongType(key) }
            return .bool(bool)
        case "float32": return .float32(Float(try #require(value.doubleValue, "\(key)")))
        case "float64": return .float64(try #require(value.doubleValue, "\(key)"))
        default:
            let int = try #require(value.intValue, "\(key)")
            switch type {
            case "uint8": return .uint8(UInt8(int))
            case "int8": return .int8(Int8(int))
            case "uint16": return .uint16(UInt16(int))
            case "int16": return .int16(Int16(int))
            case "uint32": return .uint32(UInt32(int))
            case "int32": return .int32(Int32(int))
            case "uint64": return .uint64(UInt64(int))
            default: return .int64(Int64(int))
            }
        }
    }

    private static func ggufValue(_ entry: JSONValue, key: String) throws -> GGUFValue {
        let type = try #require(entry["type"]?.stringValue)
        guard type == "array" else {
            return try scalar(type, try #require(entry["value"]), key: key)
        }
        let element = try #require(entry["element"]?.stringValue)
        if let values = entry["values"]?.arrayValue {
            return .array(GGUFArray(try values.map { try scalar(element, $0, key: key) }))
        }
        // Integer arrays are run-length coded: [[value, count], ...].
        let runs = try #require(entry["runs"]?.arrayValue)
        var values: [GGUFValue] = []
        for run in runs {
            let pair = try #require(run.arrayValue)
            let value = try scalar(element, pair[0], key: key)
            values.append(contentsOf: repeatElement(value, count: try #require(pair[1].intValue)))
        }
        return .array(GGUFArray(values))
    }
}

/// Reference ids and decodes from one `*-ids.json` fixture.
struct ReferenceCases {
    struct Case {
        var text: String
        var ids: [Int]
        var decoded: String
        var decodedSkip: String
        /// For smollm2: what transformers' own GGUF tokenizer gives, where different.
        var hfGGUFIDs: [Int]?
    }

    var prefix: [Int]
    var suffix: [Int]
    var cases: [Case]
    /// (case index, decode of prefix+ids+suffix, the same skipping special tokens)
    var withSpecial: [(Int, String, String)]

    init(_ name: String) throws {
        try self.init(url: Fixtures.url(name), strings: Fixtures.strings)
    }

    init(url: URL, strings: [String]) throws {
        let name = url.lastPathComponent
        let object = try JSONValue.parse(Data(contentsOf: url))
        let extra = object["extra_strings"]?.stringArrayValue ?? []
        let texts = strings + extra
        let rawCases = try #require(object["cases"]?.arrayValue)
        #expect(
            rawCases.count == texts.count,
            "\(name) has \(rawCases.count) cases for \(texts.count) strings")
        prefix = try #require(object["prefix"]?.intArrayValue)
        suffix = try #require(object["suffix"]?.intArrayValue)
        cases = try zip(texts, rawCases).map { text, raw in
            Case(
                text: text, ids: try #require(raw["ids"]?.intArrayValue),
                decoded: raw["decoded"]?.stringValue ?? text,
                decodedSkip: raw["decoded_skip"]?.stringValue ?? text,
                hfGGUFIDs: raw["hf_gguf_ids"]?.intArrayValue)
        }
        let rawSpecial = try #require(object["with_special"]?.arrayValue)
        withSpecial = try rawSpecial.map { entry in
            let items = try #require(entry.arrayValue)
            return (
                try #require(items[0].intValue), try #require(items[1].stringValue),
                try #require(items[2].stringValue)
            )
        }
    }
}

/// Checks a tokenizer against reference cases; returns the texts whose ids differ.
@discardableResult
func expectParity(
    _ tokenizer: any Tokenizer, _ reference: ReferenceCases, name: String,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [String] {
    var mismatched: [String] = []
    for c in reference.cases {
        let ids = tokenizer.encode(c.text, addSpecialTokens: false)
        if ids != c.ids {
            mismatched.append(c.text)
            Issue.record(
                "\(name): ids of \(c.text.debugDescription)\n  got      \(ids)\n  expected \(c.ids)",
                sourceLocation: sourceLocation)
            continue
        }
        let full = tokenizer.encode(c.text)
        #expect(
            full == reference.prefix + c.ids + reference.suffix,
            "\(name): \(c.text.debugDescription)",
            sourceLocation: sourceLocation)
        let decoded = tokenizer.decode(c.ids)
        #expect(
            sameScalars(decoded, c.decoded),
            "\(name): decode of \(c.text.debugDescription) gave \(decoded.debugDescription)",
            sourceLocation: sourceLocation)
        let decodedSkip = tokenizer.decode(c.ids, skipSpecialTokens: true)
        #expect(
            sameScalars(decodedSkip, c.decodedSkip),
            "\(name): decode (skipping special) of \(c.text.debugDescription) gave \(decodedSkip.debugDescription)",
            sourceLocation: sourceLocation)
    }
    for (index, decoded, decodedSkip) in reference.withSpecial {
        let ids = reference.prefix + reference.cases[index].ids + reference.suffix
        #expect(
            sameScalars(tokenizer.decode(ids), decoded),
            "\(name): decode with special tokens of case \(index)",
            sourceLocation: sourceLocation)
        #expect(
            sameScalars(tokenizer.decode(ids, skipSpecialTokens: true), decodedSkip),
            "\(name): decode skipping special tokens of case \(index)",
            sourceLocation: sourceLocation)
    }
    return mismatched
}

/// Tokenizers built once from the fixtures and shared by the tests. (Module-qualified
/// `Tokenizers.load`, as client code calls it.)
enum FixtureTokenizers {
    static let smolLM2: Result<any Tokenizer, any Error> = Result {
        try Tokenizers.load(
            ggufMetadata: Fixtures.ggufMetadata("smollm2-gguf-metadata.json"), source: "smollm2")
    }
    static let smolLM2WithGPT2Regex: Result<any Tokenizer, any Error> = Result {
        try load(
            ggufMetadata: Fixtures.ggufMetadata("smollm2-gguf-metadata.json"), source: "smollm2",
            preTokenizer: .byteLevel(addPrefixSpace: false, useRegex: true))
    }
    static let spmGGUF: Result<any Tokenizer, any Error> = Result {
        try load(ggufMetadata: Fixtures.ggufMetadata("spm-gguf-metadata.json"), source: "spm")
    }

    static func json(_ name: String) throws -> any Tokenizer {
        try Tokenizers.load(tokenizerJSON: Fixtures.url(name))
    }
}

/// String equality by Unicode scalars (Swift's `==` treats canonically equivalent strings as equal).
func sameScalars(_ a: String, _ b: String) -> Bool {
    a.utf8.elementsEqual(b.utf8)
}
