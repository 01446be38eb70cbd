import Foundation
import ModelFormats

/// A dataset file read into memory: its bytes' hash and its parsed JSON, with errors that name
/// the file and the line.
struct DatasetFile {
    let path: String
    let data: Data
    let sha256: String

    /// Reads the file and hashes it.
    init(path: String) throws(DatasetError) {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .unreadable(file: path, detail: "no such file")
        }
        guard !isDirectory.boolValue else { throw .unreadable(file: path, detail: "is a directory, not a file") }
        do {
            data = try MappedFile.contents(of: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(file: path, detail: "cannot be read (\(error.detail))")
        }
        sha256 = data.withUnsafeBytes { SHA256.hex($0) }
    }

    /// The file as one JSON list of records.
    func records() throws(DatasetError) -> [JSONValue] {
        let value = try Self.parse(data, file: path, lineOffset: 0, byteOffset: 0)
        guard let records = value.arrayValue else { throw .notAList(file: path, found: value.kindName) }
        return records
    }

    /// Parses JSON text; a syntax error is reported with the line and column in the whole file
    /// (`lineOffset`/`byteOffset` place a JSONL line's text inside it). Duplicate keys keep the
    /// last value, as Python's `json` does for the reference loaders.
    static func parse(_ text: Data, file: String, lineOffset: Int, byteOffset: Int) throws(DatasetError) -> JSONValue {
        do {
            return try JSONValue.parse(text, duplicateKeys: .useLast)
        } catch {
            let before = text.prefix(error.offset)
            let lastNewline = before.lastIndex(of: 0x0A).map { $0 - text.startIndex + 1 } ?? 0
            throw .invalidJSON(
                file: file, line: lineOffset + before.count(where: { $0 == 0x0A }) + 1,
                column: error.offset - lastNewline + 1, offset: byteOffset + error.offset,
                reason: error.reason)
        }
    }
}

/// Typed access to one record's fields, throwing ``DatasetError/badRecord(file:at:field:problem:)``
/// with the field's full path (`requested_rewrite[2].target_new.str`).
struct RecordReader {
    let file: String
    var location: DatasetError.RecordLocation
    let object: JSONObject
    /// Path of this object inside the record ("" for the record itself).
    let path: String

    init(
        _ value: JSONValue, file: String, location: DatasetError.RecordLocation, path: String = ""
    )
        throws(DatasetError)
    {
        self.file = file
        self.location = location
        self.path = path
        guard let object = value.objectValue else {
            throw .badRecord(
                file: file, at: location, field: path.isEmpty ? nil : path,
                problem: "expected a JSON object, found \(value.kindName)")
        }
        self.object = object
    }

    func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func error(_ key: String?, _ problem: String) -> DatasetError {
        .badRecord(file: file, at: location, field: key.map(fieldPath) ?? (path.isEmpty ? nil : path), problem: problem)
    }

    /// The member, nil when absent or null.
    func value(_ key: String) -> JSONValue? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    /// A required string; empty (or all-whitespace) is an error unless `allowEmpty`.
    func string(_ key: String, allowEmpty: Bool = false) throws(DatasetError) -> String {
        guard let value = object[key] else { throw error(key, "missing; expected a string") }
        return try Self.string(value, allowEmpty: allowEmpty) { (problem) in error(key, problem) }
    }

    /// An optional string: absent or null gives nil; present must be a non-empty string.
    func optionalString(_ key: String) throws(DatasetError) -> String? {
        guard let value = value(key) else { return nil }
        return try Self.string(value, allowEmpty: false) { (problem) in error(key, problem) }
    }

    /// A required list of strings (possibly empty); each element must be a non-empty string.
    func strings(_ key: String) throws(DatasetError) -> [String] {
        guard let value = object[key] else { throw error(key, "missing; expected a list of strings") }
        return try strings(value, key: key)
    }

    /// An optional list of strings: absent or null gives [].
    func optionalStrings(_ key: String) throws(DatasetError) -> [String] {
        guard let value = value(key) else { return [] }
        return try strings(value, key: key)
    }

    /// A list of strings that may hold empty ones (answer and alias lists, where the caller
    /// decides): `required` makes absence an error, else absent or null gives [].
    func stringsAllowingEmpty(_ key: String, required: Bool) throws(DatasetError) -> [String] {
        guard let value = required ? object[key] : value(key) else {
            if required { throw error(key, "missing; expected a list of strings") }
            return []
        }
        return try strings(value, key: key, allowEmpty: true)
    }

    private func strings(_ value: JSONValue, key: String, allowEmpty: Bool = false) throws(DatasetError) -> [String] {
        guard let array = value.arrayValue else {
            throw error(key, "expected a list of strings, found \(value.kindName)")
        }
        var result: [String] = []
        for (i, element) in array.enumerated() {
            result.append(
                try Self.string(element, allowEmpty: allowEmpty) { problem in
                    error("\(key)[\(i)]", problem)
                })
        }
        return result
    }

    /// A required nested object.
    func object(_ key: String) throws(DatasetError) -> RecordReader {
        guard let value = object[key] else { throw error(key, "missing; expected an object") }
        return try RecordReader(value, file: file, location: location, path: fieldPath(key))
    }

    /// A required list of objects.
    func objects(_ key: String) throws(DatasetError) -> [RecordReader] {
        guard let value = object[key] else { throw error(key, "missing; expected a list of objects") }
        guard let array = value.arrayValue else {
            throw error(key, "expected a list of objects, found \(value.kindName)")
        }
        var result: [RecordReader] = []
        for (i, element) in array.enumerated() {
            result.append(try RecordReader(element, file: file, location: location, path: fieldPath("\(key)[\(i)]")))
        }
        return result
    }

    /// A record id: a string or an integer, written as text.
    func id(_ key: String) throws(DatasetError) -> String {
        guard let value = object[key] else { throw error(key, "missing; expected an integer or a string") }
        if let int = value.intValue { return String(int) }
        if let string = value.stringValue, !string.allSatisfy(\.isWhitespace) { return string }
        throw error(
            key,
            value.stringValue != nil
                ? "is empty; expected an integer or a non-empty string"
                : "expected an integer or a string, found \(value.kindName)")
    }

    private static func string(
        _ value: JSONValue, allowEmpty: Bool, error: (String) -> DatasetError
    )
        throws(DatasetError) -> String
    {
        guard let string = value.stringValue else { throw error("expected a string, found \(value.kindName)") }
        if !allowEmpty, string.allSatisfy(\.isWhitespace) { throw error("is empty; expected a non-empty string") }
        return string
    }
}

/// The ids seen so far in a file: two cases with one id would write the same per-case result
/// file, so a repeated id is an error naming both records.
struct CaseIDs {
    private var seen: [String: String] = [:]

    mutating func insert(_ id: String, field: String, of record: RecordReader) throws(DatasetError) {
        var first = record.location
        first.caseID = nil
        if let previous = seen.updateValue(first.description, forKey: id) {
            throw record.error(field, "duplicate id \"\(id)\" (also at \(previous))")
        }
    }
}
