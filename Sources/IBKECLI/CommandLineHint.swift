import Editing
import Evaluation
import Training

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
        case RunError.invalidProtocol: return " (--protocol)"
        case RunError.noChatTemplate: return " (--chat)"
        case RunError.runExists: return " (pass --resume to continue it, or choose another --out)"
        case RunError.noRunToResume: return " (run without --resume to start one)"
        case RunError.invalidArgument(let detail) where detail.hasPrefix("top-k"): return " (--top-k)"
        case RunError.invalidArgument(let detail) where detail.hasPrefix("a method is listed twice"): return " (--methods)"
        case TrainingError.noCheckpoint: return " (run without --resume to start)"
        default:
            return nil
        }
    }
}
