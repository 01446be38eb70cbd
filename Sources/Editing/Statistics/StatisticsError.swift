/// Errors of reading a statistics corpus and of the statistics cache. Each names the file.
public enum StatisticsError: Error, CustomStringConvertible, Equatable {
    /// The corpus path, or a file in it, cannot be read.
    case unreadable(file: String, reason: String)
    /// A file (or a whole corpus) holds no text.
    case empty(file: String, detail: String)
    /// A `.jsonl` line is not an object with a string `text` field.
    case badJSONLine(file: String, line: Int, detail: String)
    /// A cache file's key field differs from the requested one.
    case keyMismatch(file: String, field: String, expected: String, found: String)
    /// A cache file lacks what a statistics file has (a field, the matrix, its shape).
    case malformed(file: String, detail: String)
    /// Layers outside the model, a window longer than its context, no tokens to sample.
    case invalidOption(detail: String)

    public var description: String {
        switch self {
        case .unreadable(let file, let reason): "\(file): cannot read: \(reason)"
        case .empty(let file, let detail): "\(file): \(detail)"
        case .badJSONLine(let file, let line, let detail): "\(file):\(line): \(detail)"
        case .keyMismatch(let file, let field, let expected, let found):
            "\(file): statistics of another \(field) (the file has \(found), expected \(expected)); refusing to use them"
        case .malformed(let file, let detail): "\(file): not a statistics file: \(detail)"
        case .invalidOption(let detail): detail
        }
    }
}
