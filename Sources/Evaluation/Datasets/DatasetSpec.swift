/// A dataset named on the command line as `KIND:PATH`: `zsre:`, `counterfact:` (or `cf:`),
/// `mquake:`, `jsonl:` (or `custom:`). The kind is explicit because the formats cannot all be
/// told apart by content (a zsRE and a custom file are both lists of objects with prompts).
public struct DatasetSpec: Sendable, Hashable, CustomStringConvertible {
    public var kind: BenchmarkKind
    public var path: String

    public init(kind: BenchmarkKind, path: String) {
        self.kind = kind
        self.path = path
    }

    /// The accepted kind names (lowercase), aliases included.
    public static let kindNames: [String: BenchmarkKind] = [
        "zsre": .zsre, "counterfact": .counterfact, "cf": .counterfact, "mquake": .mquake,
        "jsonl": .custom, "custom": .custom,
    ]

    /// Parses `KIND:PATH`; the kind is matched without regard to case, the path is everything
    /// after the first colon.
    ///
    /// - Throws: ``DatasetError/badSpec(spec:problem:)``.
    public init(parsing text: String) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw DatasetError.badSpec(spec: text, problem: "expected KIND:PATH with KIND one of \(Self.kindList)")
        }
        let name = String(text[..<colon])
        let path = String(text[text.index(after: colon)...])
        guard let kind = Self.kindNames[name.lowercased()] else {
            throw DatasetError.badSpec(
                spec: text,
                problem: "unknown dataset kind \"\(name)\"; expected one of \(Self.kindList)")
        }
        guard !path.isEmpty else { throw DatasetError.badSpec(spec: text, problem: "no path after \"\(name):\"") }
        self.init(kind: kind, path: path)
    }

    private static var kindList: String {
        "zsre, counterfact (cf), mquake, jsonl (custom)"
    }

    /// `KIND:PATH`, with the canonical kind name.
    public var description: String {
        "\(kind == .custom ? "jsonl" : kind.rawValue):\(path)"
    }
}

extension Dataset {
    /// Loads a benchmark file.
    ///
    /// - Parameters:
    ///   - zsreTarget: which zsRE field is the new target (ignored for other kinds).
    ///   - limit: read only the first `limit` records (zsRE records skipped for an empty
    ///     target count among them, so ids stay record indices).
    /// - Throws: ``DatasetError`` naming the file, and for a bad record its index, case id and
    ///   field.
    public static func load(_ spec: DatasetSpec, zsreTarget: ZsRETarget = .alt, limit: Int? = nil) throws -> Dataset {
        if let limit, limit < 0 {
            throw DatasetError.invalidArgument("dataset limit must be 0 or more, got \(limit)")
        }
        let file = try DatasetFile(path: spec.path)
        switch spec.kind {
        case .zsre: return try ZsRELoader.load(file, target: zsreTarget, limit: limit)
        case .counterfact: return try CounterFactLoader.load(file, limit: limit)
        case .mquake: return try MQuAKELoader.load(file, limit: limit)
        case .custom: return try JSONLLoader.load(file, limit: limit)
        }
    }
}
