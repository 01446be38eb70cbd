import Editing

/// What to type about a library error: the library's messages name no command-line flags, so
/// the CLI adds the flag that resolves the error, when there is one.
enum CommandLineHint {
    static func hint(for error: Error) -> String? {
        switch error {
        case ExportError.destinationExists:
            return " (pass --force)"
        case EditorError.invalidHyperparameter(let method, "editor", _):
            return " (--editor FILE; train one with `ibke train --method \(method)`)"
        case EditorError.invalidHyperparameter(_, "mom2_adjustment", let expected) where expected.hasPrefix("second-moment statistics"):
            return " (`ibke edit` and `ibke eval` make them from --stats-corpus PATH)"
        default:
            return nil
        }
    }
}
