/// Why a benchmark file cannot be used. Every message names the file, and for a bad record its
/// position (record index, or line for JSONL), its `case_id` when known, and the field, so that a
/// user can find the spot in a file of thousands of records.
public enum DatasetError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file is missing, a directory, or cannot be read.
    case unreadable(file: String, detail: String)
    /// The text is not JSON; `line`/`column` are 1-based, `offset` the byte offset in the file.
    case invalidJSON(file: String, line: Int, column: Int, offset: Int, reason: String)
    /// The top level is not the list of records the format needs.
    case notAList(file: String, found: String)
    /// One record is wrong: not an object, or a field missing, of the wrong type, or empty.
    case badRecord(file: String, at: RecordLocation, field: String?, problem: String)
    /// A dataset spec (`KIND:PATH`) that cannot be parsed.
    case badSpec(spec: String, problem: String)
    case invalidArgument(String)

    /// Where a record sits in its file.
    public struct RecordLocation: Equatable, Sendable, CustomStringConvertible {
        /// 0-based index among the records (JSONL: among the non-blank lines).
        public var index: Int
        /// 1-based line of a JSONL record.
        public var line: Int?
        /// The record's own id, once read.
        public var caseID: String?

        public init(index: Int, line: Int? = nil, caseID: String? = nil) {
            self.index = index
            self.line = line
            self.caseID = caseID
        }

        public var description: String {
            var text = line.map { "line \($0)" } ?? "record \(index)"
            if let caseID { text += " (case_id \(caseID))" }
            return text
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let file, let detail):
            "\(file): \(detail)"
        case .invalidJSON(let file, let line, let column, let offset, let reason):
            "\(file): line \(line), column \(column) (byte \(offset)): invalid JSON: \(reason)"
        case .notAList(let file, let found):
            "\(file): expected a JSON list of records at the top level, found \(found)"
        case .badRecord(let file, let at, let field, let problem):
            if let field { "\(file): \(at): field \"\(field)\": \(problem)" } else { "\(file): \(at): \(problem)" }
        case .badSpec(let spec, let problem):
            "dataset \"\(spec)\": \(problem)"
        case .invalidArgument(let detail):
            detail
        }
    }
}
