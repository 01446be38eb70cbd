import Foundation

/// Typed, read-only access to a Hugging Face `config.json` (or any nested object in it).
///
/// Deliberately generic: it knows no architecture. Model code maps it to its own configuration
/// and decides defaults; this type only guarantees that every value it hands out has the asked
/// type, and that every failure names the file and the key (`rope_scaling.factor`).
///
/// `null` counts as absent: HF writes `"rope_scaling": null` and `"pad_token_id": null` for
/// "not set", so the `…IfPresent` accessors return nil for it and the plain ones throw.
public struct HFConfig: Sendable, Equatable {
    /// The file the values come from (named in errors).
    public let url: URL
    /// The dotted path of this object in the file: `""` at the root, `"rope_scaling"` for a
    /// nested object.
    public let keyPath: String
    /// The raw values of this object.
    public let values: JSONObject

    /// Reads and parses a config file.
    ///
    /// - Throws: ``HFConfigError`` if the file cannot be read, is not JSON or not an object.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try MappedFile.contents(of: url)
        } catch {
            throw HFConfigError.cannotRead(file: url.path, reason: error.detail)
        }
        try self.init(data: data, url: url)
    }

    /// Parses config JSON already in memory; `url` is only used in error messages.
    public init(data: Data, url: URL) throws {
        let json: JSONValue
        do {
            json = try JSONValue.parse(data)
        } catch {
            throw HFConfigError.invalidJSON(file: url.path, reason: "\(error)")
        }
        guard case .object(let values) = json else {
            throw HFConfigError.notAnObject(file: url.path, keyPath: "", found: json.kindName)
        }
        self.init(url: url, keyPath: "", values: values)
    }

    private init(url: URL, keyPath: String, values: JSONObject) {
        self.url = url
        self.keyPath = keyPath
        self.values = values
    }

    /// The keys of this object, sorted.
    public var keys: [String] { values.map(\.key).sorted() }

    /// Whether `key` is present with a non-null value.
    public func contains(_ key: String) -> Bool {
        switch values[key] {
        case nil, .null?: false
        default: true
        }
    }

    /// The raw value of `key` (`.null` included), or nil if the key is absent.
    public subscript(key: String) -> JSONValue? { values[key] }

    // MARK: Scalars

    /// An integer value; `2048.0` counts as 2048, `0.5` does not.
    public func int(_ key: String) throws -> Int {
        try required(key, "integer") { $0.intValue }
    }

    public func intIfPresent(_ key: String) throws -> Int? {
        try optional(key, "integer") { $0.intValue }
    }

    public func int(_ key: String, default value: Int) throws -> Int {
        try intIfPresent(key) ?? value
    }

    /// A number (integer or floating-point) as a `Double`.
    public func double(_ key: String) throws -> Double {
        try required(key, "number") { $0.doubleValue }
    }

    public func doubleIfPresent(_ key: String) throws -> Double? {
        try optional(key, "number") { $0.doubleValue }
    }

    public func double(_ key: String, default value: Double) throws -> Double {
        try doubleIfPresent(key) ?? value
    }

    public func string(_ key: String) throws -> String {
        try required(key, "string") { $0.stringValue }
    }

    public func stringIfPresent(_ key: String) throws -> String? {
        try optional(key, "string") { $0.stringValue }
    }

    public func string(_ key: String, default value: String) throws -> String {
        try stringIfPresent(key) ?? value
    }

    /// A JSON boolean (`0`/`1` are not accepted).
    public func bool(_ key: String) throws -> Bool {
        try required(key, "boolean") { $0.boolValue }
    }

    public func boolIfPresent(_ key: String) throws -> Bool? {
        try optional(key, "boolean") { $0.boolValue }
    }

    public func bool(_ key: String, default value: Bool) throws -> Bool {
        try boolIfPresent(key) ?? value
    }

    // MARK: Arrays and objects

    /// An array of integers, or a single integer as a one-element array (HF writes
    /// `eos_token_id` either way).
    public func ints(_ key: String) throws -> [Int] {
        try required(key, "integer or array of integers", Self.intList)
    }

    public func intsIfPresent(_ key: String) throws -> [Int]? {
        try optional(key, "integer or array of integers", Self.intList)
    }

    /// An array of strings (`architectures`, `layer_types`).
    public func strings(_ key: String) throws -> [String] {
        try required(key, "array of strings") { $0.stringArrayValue }
    }

    public func stringsIfPresent(_ key: String) throws -> [String]? {
        try optional(key, "array of strings") { $0.stringArrayValue }
    }

    /// A nested object (`rope_scaling`, `rope_parameters`, `quantization_config`) with the same
    /// typed access; its errors name the full dotted key.
    public func object(_ key: String) throws -> HFConfig {
        let values = try required(key, "object") { $0.objectValue }
        return HFConfig(url: url, keyPath: path(key), values: values)
    }

    public func objectIfPresent(_ key: String) throws -> HFConfig? {
        try optional(key, "object") { $0.objectValue }
            .map { HFConfig(url: url, keyPath: path(key), values: $0) }
    }

    // MARK: Helpers

    private func path(_ key: String) -> String {
        keyPath.isEmpty ? key : "\(keyPath).\(key)"
    }

    private func required<T>(
        _ key: String, _ expected: String, _ convert: (JSONValue) -> T?
    ) throws -> T {
        guard let value = values[key] else {
            throw HFConfigError.missingKey(file: url.path, key: path(key))
        }
        guard let converted = convert(value) else {
            throw HFConfigError.wrongType(
                file: url.path, key: path(key), expected: expected, found: Self.describe(value))
        }
        return converted
    }

    private func optional<T>(
        _ key: String, _ expected: String, _ convert: (JSONValue) -> T?
    ) throws -> T? {
        guard let value = values[key], value != .null else { return nil }
        guard let converted = convert(value) else {
            throw HFConfigError.wrongType(
                file: url.path, key: path(key), expected: expected, found: Self.describe(value))
        }
        return converted
    }

    private static func intList(_ value: JSONValue) -> [Int]? {
        value.intValue.map { [$0] } ?? value.intArrayValue
    }

    /// The kind and, for scalars, the value: "string \"64\"", "number 0.5", "null".
    private static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let v): "boolean \(v)"
        case .int(let v): "integer \(v)"
        case .double(let v): "number \(v)"
        case .string(let v): "string \(SafetensorsWriter.jsonString(v))"
        case .array(let v): "array of \(v.count)"
        case .object: "object"
        }
    }
}

/// Why a config.json value could not be read; every case names the file and, where there is
/// one, the dotted key.
public enum HFConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    case cannotRead(file: String, reason: String)
    case invalidJSON(file: String, reason: String)
    case notAnObject(file: String, keyPath: String, found: String)
    case missingKey(file: String, key: String)
    case wrongType(file: String, key: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .cannotRead(let file, let reason):
            "\(file): cannot read config: \(reason)"
        case .invalidJSON(let file, let reason):
            "\(file): config is not valid JSON: \(reason)"
        case .notAnObject(let file, let keyPath, let found):
            "\(file): \(keyPath.isEmpty ? "config" : "'\(keyPath)'") must be a JSON object, "
                + "found \(found)"
        case .missingKey(let file, let key):
            "\(file): missing key '\(key)'"
        case .wrongType(let file, let key, let expected, let found):
            "\(file): key '\(key)' must be \(expected), found \(found)"
        }
    }
}
