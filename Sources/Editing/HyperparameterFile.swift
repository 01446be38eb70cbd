import Foundation
import ModelFormats

/// Reads an editor's hyperparameters from a JSON or YAML file (or an in-memory object),
/// accepting the reference implementations' key names as aliases and rejecting keys nobody
/// reads, so a typo (`num_step`) is an error rather than a silently ignored setting.
public struct HyperparameterReader {
    public let object: JSONObject
    /// The file name, for messages.
    public let file: String
    private var read: Set<String> = []
    private var ignored: Set<String> = []

    public init(object: JSONObject, file: String) {
        self.object = object
        self.file = file
    }

    /// Loads `url`: JSON, or YAML when the name ends in `.yaml`/`.yml`.
    public init(contentsOf url: URL) throws {
        let name = url.lastPathComponent
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw EditorError.invalidHyperparameter(file: name, key: "(file)", expected: "a readable file")
        }
        let value: JSONValue
        if ["yaml", "yml"].contains(url.pathExtension.lowercased()) {
            value = try SimpleYAML.parse(String(decoding: data, as: UTF8.self), file: name)
        } else {
            do { value = try JSONValue.parse(data) } catch {
                throw EditorError.invalidHyperparameter(file: name, key: "(file)", expected: "JSON (\(error))")
            }
        }
        guard let object = value.objectValue else {
            throw EditorError.invalidHyperparameter(file: name, key: "(file)", expected: "an object of hyperparameters")
        }
        self.init(object: object, file: name)
    }

    /// `base` (a file's object, or empty) with `KEY=VALUE` overrides from the command line,
    /// each value read as in YAML (`beta=0.01`, `layers=[27,28]`, `rows=target_only`).
    public static func overriding(_ base: JSONObject, with assignments: [String], file: String) throws -> JSONObject {
        var object = base
        for assignment in assignments {
            guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else {
                throw EditorError.invalidHyperparameter(file: file, key: assignment, expected: "KEY=VALUE")
            }
            let yaml = assignment[..<eq] + ": " + assignment[assignment.index(after: eq)...]
            guard let parsed = try SimpleYAML.parse(String(yaml), file: file).objectValue else { continue }
            for member in parsed { _ = object.updateValue(member.value, forKey: member.key) }
        }
        return object
    }

    /// The first of `keys` present (the project's name first, then aliases).
    private mutating func value(_ keys: [String]) -> (String, JSONValue)? {
        for key in keys {
            if let v = object[key] {
                read.insert(key)
                return (key, v)
            }
        }
        return nil
    }

    public mutating func double(_ keys: String..., default fallback: Double) throws -> Double {
        guard let (key, v) = value(keys) else { return fallback }
        guard let d = v.doubleValue, d.isFinite else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "a number, found \(v.kindName)")
        }
        return d
    }

    /// A number, or nil when absent, `null` or `false` (how references switch a constraint off).
    public mutating func optionalDouble(_ keys: String..., default fallback: Double?) throws -> Double? {
        guard let (key, v) = value(keys) else { return fallback }
        if v == .null || v == .bool(false) { return nil }
        guard let d = v.doubleValue, d.isFinite else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "a number, null or false, found \(v.kindName)")
        }
        return d
    }

    public mutating func int(_ keys: String..., default fallback: Int) throws -> Int {
        guard let (key, v) = value(keys) else { return fallback }
        guard let i = v.intValue else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "an integer, found \(v.kindName)")
        }
        return i
    }

    public mutating func ints(_ keys: String..., default fallback: [Int]) throws -> [Int] {
        guard let (key, v) = value(keys) else { return fallback }
        if let i = v.intValue { return [i] }
        guard let list = v.intArrayValue, !list.isEmpty else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "a non-empty list of integers, found \(v.kindName)")
        }
        return list
    }

    public mutating func bool(_ keys: String..., default fallback: Bool) throws -> Bool {
        guard let (key, v) = value(keys) else { return fallback }
        guard let b = v.boolValue else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "true or false, found \(v.kindName)")
        }
        return b
    }

    public mutating func string(_ keys: String..., default fallback: String) throws -> String {
        guard let (key, v) = value(keys) else { return fallback }
        guard let s = v.stringValue else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "a string, found \(v.kindName)")
        }
        return s
    }

    /// A list of strings (a single string counts as a list of one).
    public mutating func strings(_ keys: String..., default fallback: [String]) throws -> [String] {
        guard let (key, v) = value(keys) else { return fallback }
        if let s = v.stringValue { return [s] }
        guard case .array(let items) = v, !items.isEmpty, items.allSatisfy({ $0.stringValue != nil }) else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "a non-empty list of strings, found \(v.kindName)")
        }
        return items.compactMap(\.stringValue)
    }

    /// Keys the references write that do not change this implementation (devices, model
    /// names, statistics paths, …): accepted and ignored.
    public mutating func ignore(_ keys: String...) {
        ignored.formUnion(keys)
    }

    /// Throws for the first key that was neither read nor ignored.
    public func finish() throws {
        for member in object where !read.contains(member.key) && !ignored.contains(member.key) {
            throw EditorError.unknownHyperparameter(file: file, key: member.key, known: read.union(ignored).sorted())
        }
    }

    /// Checks layer indices against the model's depth (reference configs copied between
    /// models name layers that do not exist).
    public func checkLayers(_ layers: [Int], layerCount: Int) throws {
        for layer in layers where layer < 0 || layer >= layerCount {
            throw EditorError.layerOutOfRange(file: file, layer: layer, layers: layerCount)
        }
    }
}

/// The subset of YAML that editing configurations use: `key: value` lines, `#` comments,
/// scalars (numbers, `true`/`false`, `null`/`~`, quoted or bare strings), inline lists
/// `[a, b]` and block lists (`- item` lines under a key). Nested mappings are not supported
/// and are reported as errors.
enum SimpleYAML {
    static func parse(_ text: String, file: String) throws -> JSONValue {
        var object = JSONObject()
        var listKey: String?
        var list: [JSONValue] = []
        func flush() {
            if let key = listKey { object.updateValue(.array(list), forKey: key) }
            listKey = nil
            list = []
        }
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = stripComment(String(raw))
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("---") { continue }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("- ") || trimmed == "-" {
                guard listKey != nil else {
                    throw EditorError.invalidHyperparameter(file: file, key: "line \(n + 1)", expected: "a list item under a key")
                }
                list.append(scalar(String(trimmed.dropFirst()).trimmingCharacters(in: .whitespaces)))
                continue
            }
            guard !line.hasPrefix(" "), let colon = line.firstIndex(of: ":") else {
                throw EditorError.invalidHyperparameter(file: file, key: "line \(n + 1)", expected: "`key: value` (nested mappings are not supported)")
            }
            flush()
            let key = unquote(String(line[..<colon]).trimmingCharacters(in: .whitespaces))
            let rest = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            if rest.isEmpty {
                listKey = key
            } else {
                object.updateValue(try value(rest, file: file, line: n + 1), forKey: key)
            }
        }
        flush()
        return .object(object)
    }

    private static func value(_ text: String, file: String, line: Int) throws -> JSONValue {
        guard text.hasPrefix("[") else { return scalar(text) }
        guard text.hasSuffix("]") else {
            throw EditorError.invalidHyperparameter(file: file, key: "line \(line)", expected: "a closing ] on the same line")
        }
        let inner = text.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
        if inner.isEmpty { return .array([]) }
        return .array(inner.split(separator: ",").map { scalar($0.trimmingCharacters(in: .whitespaces)) })
    }

    private static func scalar(_ text: String) -> JSONValue {
        if text.hasPrefix("\"") || text.hasPrefix("'") { return .string(unquote(text)) }
        switch text.lowercased() {
        case "true", "yes": return .bool(true)
        case "false", "no": return .bool(false)
        case "null", "~", "none", "": return .null
        default: break
        }
        if let i = Int(text) { return .int(i) }
        if let d = Double(text) { return .double(d) }
        return .string(text)
    }

    private static func unquote(_ text: String) -> String {
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            return String(text.dropFirst().dropLast())
        }
        return text
    }

    private static func stripComment(_ line: String) -> String {
        var quote: Character?
        for (i, c) in zip(line.indices, line) {
            if let q = quote { if c == q { quote = nil } } else if c == "\"" || c == "'" { quote = c }
            else if c == "#" && (i == line.startIndex || line[line.index(before: i)] == " ") {
                return String(line[..<i])
            }
        }
        return line
    }
}
