import Foundation
import ModelFormats
import Yams

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
        do { data = try MappedFile.contents(of: url) } catch {
            throw EditorError.invalidHyperparameter(file: name, key: "(file)", expected: "a readable file")
        }
        let value: JSONValue
        if ["yaml", "yml"].contains(url.pathExtension.lowercased()) {
            value = try YAMLFile.parse(String(decoding: data, as: UTF8.self), file: name)
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
            guard let parsed = try YAMLFile.parse(String(yaml), file: file).objectValue else { continue }
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
            let found = v.doubleValue.map { "\($0)" } ?? v.kindName  // NaN and ±infinity by name
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "a finite number, found \(found)")
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

    /// An integer; with `range`, one inside it (counts such as steps are bounded so that a file
    /// cannot ask for a run that never ends).
    public mutating func int(_ keys: String..., default fallback: Int, in range: ClosedRange<Int>? = nil) throws -> Int {
        guard let (key, v) = value(keys) else { return fallback }
        guard let i = v.intValue else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "an integer, found \(v.kindName)")
        }
        if let range, !range.contains(i) {
            throw EditorError.invalidHyperparameter(
                file: file, key: key,
                expected: "an integer from \(range.lowerBound) to \(range.upperBound), found \(i)")
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

    /// The keys every reference config writes to name models, devices and module templates, and
    /// a method's own such keys: accepted and ignored.
    public mutating func ignoreReferenceKeys(_ methodKeys: [String] = []) {
        ignored.formUnion(Self.referenceKeys + methodKeys)
    }

    /// The keys ``ignoreReferenceKeys(_:)`` ignores for every method.
    static let referenceKeys = [
        "alg_name", "model_name", "device", "model_parallel", "fp16", "layer_module_tmp",
        "mlp_module_tmp", "attn_module_tmp", "ln_f_module", "lm_head_module",
    ]

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

    /// Refuses a layer listed twice (each edited matrix takes one update).
    public func checkDistinct(_ layers: [Int], key: String = "layers") throws {
        guard Set(layers).count == layers.count else {
            throw EditorError.invalidHyperparameter(file: file, key: key, expected: "distinct layers, found \(layers)")
        }
    }
}

/// YAML files, read with Yams (libyaml) into the JSON model the readers share. Booleans are
/// YAML 1.2's `true`/`false` only: YAML 1.1's `yes`/`no`/`on`/`off` stay strings, as a key such as
/// `fact_token: no` means in the reference configurations. Nesting and the number of values
/// (aliases counted as often as they are used) are bounded, so that a small file cannot
/// expand into a large one.
enum YAMLFile {
    static let maximumDepth = 32
    static let maximumValues = 100_000

    static let resolver: Resolver = {
        // The pattern is a constant that compiles; the fallback is never taken.
        (try? Resolver.default.removing(.bool).appending(.bool, "^(?:true|True|TRUE|false|False|FALSE)$")) ?? .default
    }()

    static func parse(_ text: String, file: String) throws -> JSONValue {
        let root: Node?
        do { root = try Yams.compose(yaml: text, resolver) } catch {
            throw EditorError.invalidHyperparameter(file: file, key: "(file)", expected: "YAML (\(error))")
        }
        guard let root else { return .object([:]) }
        var budget = maximumValues
        return try value(root, file: file, depth: 0, budget: &budget)
    }

    /// A YAML integer in the forms a hyperparameter file uses: decimal, `0x` hexadecimal or `0o`
    /// octal, with an optional sign and `_` separators; nil for anything else or an overflow.
    static func integer(_ text: String) -> Int? {
        var digits = text.replacingOccurrences(of: "_", with: "")
        var sign = 1
        if let first = digits.first, first == "-" || first == "+" {
            sign = first == "-" ? -1 : 1
            digits.removeFirst()
        }
        let radix = digits.hasPrefix("0x") ? 16 : digits.hasPrefix("0o") ? 8 : 10
        if radix != 10 { digits.removeFirst(2) }
        guard !digits.isEmpty, let magnitude = Int(digits, radix: radix) else {
            // Int.min's magnitude does not fit in Int.
            return sign == -1 && radix == 10 ? Int("-" + digits) : nil
        }
        return sign * magnitude
    }

    private static func value(_ node: Node, file: String, depth: Int, budget: inout Int) throws -> JSONValue {
        func invalid(_ expected: String) -> EditorError {
            let line = node.mark.map { " (line \($0.line))" } ?? ""
            return EditorError.invalidHyperparameter(file: file, key: "(file)\(line)", expected: expected)
        }
        guard depth < maximumDepth else { throw invalid("at most \(maximumDepth) levels of nesting") }
        budget -= 1
        guard budget >= 0 else { throw invalid("at most \(maximumValues) values, aliases included") }
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case .int:
                // Parsed here, not by Yams, whose YAML 1.1 sexagesimal form (`1:30`) traps on overflow.
                guard let i = Self.integer(scalar.string) else {
                    throw invalid("a decimal, 0x or 0o integer that fits in 64 bits, found \(scalar.string.prefix(40))")
                }
                return .int(i)
            case .float: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            var object = JSONObject()
            for (key, child) in mapping {
                guard case .scalar(let name) = key else { throw invalid("keys that are plain strings") }
                object.updateValue(try value(child, file: file, depth: depth + 1, budget: &budget), forKey: name.string)
            }
            return .object(object)
        case .sequence(let sequence):
            return .array(try sequence.map { try value($0, file: file, depth: depth + 1, budget: &budget) })
        case .alias:
            throw invalid("aliases that name an anchor")
        }
    }
}
