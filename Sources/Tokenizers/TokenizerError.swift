/// Why a tokenizer could not be built. The description is one line that names the source (file
/// name or "GGUF metadata") and the field, in llama.cpp's style: `model.gguf: missing
/// tokenizer.ggml.tokens`.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A required field is absent.
    case missingField(source: String, field: String)
    /// A field is present but has the wrong type or an impossible value.
    case invalidField(source: String, field: String, reason: String)
    /// A field names an algorithm or pattern this module does not implement.
    case unsupported(source: String, field: String, value: String)
    /// The file could not be read or is not JSON.
    case unreadable(source: String, reason: String)

    public var description: String {
        switch self {
        case .missingField(let source, let field):
            "\(source): missing \(field)"
        case .invalidField(let source, let field, let reason):
            "\(source): invalid \(field): \(reason)"
        case .unsupported(let source, let field, let value):
            "\(source): unsupported \(field) \(value)"
        case .unreadable(let source, let reason):
            "\(source): cannot read: \(reason)"
        }
    }
}
