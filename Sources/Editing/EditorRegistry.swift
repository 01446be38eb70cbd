import Foundation
import Models

/// The editing methods `ibke` knows, by name, with their defaults for a model.
public enum EditorRegistry {
    public static let names = ["ft-l", "ft-m", "rome"]

    /// An editor by name, with the defaults for `config` or the hyperparameters in `file`.
    ///
    /// - Throws: ``EditorError`` for an unknown method or a bad hyperparameter file.
    public static func make(_ name: String, config: TransformerConfig, hyperparameters file: URL? = nil) throws -> any Editor {
        switch name.lowercased() {
        case "ft-l", "ft": return try FineTuning.make(.promptLast, config: config, file: file)
        case "ft-m": return try FineTuning.make(.targetNew, config: config, file: file)
        case "rome", "r-rome":
            guard let file else { return ROME(hyperparameters: .defaults(layerCount: config.layerCount)) }
            var reader = try HyperparameterReader(contentsOf: file)
            return ROME(hyperparameters: try ROME.Hyperparameters(reading: &reader, layerCount: config.layerCount))
        default:
            throw EditorError.invalidHyperparameter(file: "--methods", key: name, expected: "one of \(names.joined(separator: ", "))")
        }
    }
}
