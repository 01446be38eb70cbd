import Foundation
import Models
import TensorCore

/// The editing methods `ibke` knows, by name, with their defaults for a model.
public enum EditorRegistry {
    public static let names = ["ft-l", "ft-m", "rome", "memit", "alphaedit"]

    /// An editor by name, with the defaults for `config` or the hyperparameters in `file`.
    ///
    /// - Throws: ``EditorError`` for an unknown method or a bad hyperparameter file.
    public static func make(_ name: String, config: TransformerConfig, hyperparameters file: URL? = nil,
                            secondMoment: (@Sendable (Int) throws -> Tensor)? = nil, cacheDirectory: URL? = nil) throws -> any Editor {
        switch name.lowercased() {
        case "ft-l", "ft": return try FineTuning.make(.promptLast, config: config, file: file)
        case "ft-m": return try FineTuning.make(.targetNew, config: config, file: file)
        case "rome", "r-rome":
            guard let file else { return ROME(hyperparameters: .defaults(layerCount: config.layerCount)) }
            var reader = try HyperparameterReader(contentsOf: file)
            return ROME(hyperparameters: try ROME.Hyperparameters(reading: &reader, layerCount: config.layerCount))
        case "memit", "alphaedit":
            let alpha = name.lowercased() == "alphaedit"
            var h = MassEditingHyperparameters.defaults(layerCount: config.layerCount)
            if let file {
                var reader = try HyperparameterReader(contentsOf: file)
                h = try MassEditingHyperparameters(reading: &reader, layerCount: config.layerCount, alphaEdit: alpha)
            }
            guard let secondMoment else {
                throw EditorError.invalidHyperparameter(file: name, key: "mom2_adjustment", expected: "statistics (run `ibke stats`)")
            }
            return alpha ? AlphaEdit(hyperparameters: h, secondMoment: secondMoment, cacheDirectory: cacheDirectory)
                : MEMIT(hyperparameters: h, secondMoment: secondMoment)
        default:
            throw EditorError.invalidHyperparameter(file: "--methods", key: name, expected: "one of \(names.joined(separator: ", "))")
        }
    }
}
