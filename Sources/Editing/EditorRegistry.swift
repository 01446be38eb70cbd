import Foundation
import Models
import TensorCore

/// The editing methods `ibke` knows, by name, with their defaults for a model.
public enum EditorRegistry {
    public static let names = ["ft-l", "ft-m", "rome", "memit", "alphaedit", "ibke", "mend"]

    /// Methods that apply a trained editor network (``HypernetworkEditor``).
    public static let trainedMethods = ["ibke", "mend"]

    /// An editor by name for `model`: as ``make(_:config:hyperparameters:statistics:)``, and for
    /// the trained methods (`ibke`, `mend`) the editor in `editorFile`.
    ///
    /// - Throws: ``HypernetworkError`` for an editor file made for another model or of
    ///   another method, and what the other `make` throws.
    public static func make(
        _ name: String, model: LanguageModel, hyperparameters file: URL? = nil, statistics: SecondMoments? = nil,
        editorFile: URL? = nil
    ) throws -> any Editor {
        let method = name.lowercased()
        guard trainedMethods.contains(method) else {
            return try make(name, config: model.config, hyperparameters: file, statistics: statistics)
        }
        guard let editorFile else {
            throw EditorError.invalidHyperparameter(
                file: method, key: "editor", expected: "a trained editor file (--editor FILE; train one with `ibke train --method \(method)`)")
        }
        let editor = try HypernetworkEditor.load(from: editorFile, for: model)
        guard editor.name == method else {
            throw HypernetworkError.malformed(file: editorFile.lastPathComponent, detail: "it holds a \(editor.name) editor, not \(method)")
        }
        if let file {
            var reader = try HyperparameterReader(contentsOf: file)
            try editor.overrideEditSettings(&reader)
        }
        return editor
    }

    /// An editor by name, with the defaults for `config` or the hyperparameters in `file`.
    ///
    /// Methods that use second moments (ROME with `mom2_adjustment`, its default) take them from
    /// `statistics`, one object shared by every editor of the model, and announce their layers
    /// to it (``SecondMoments/expect(layers:)``), so that a caller can collect them all in one
    /// pass before editing (``SecondMoments/prepare(layers:)`` with
    /// ``SecondMoments/expectedLayers``).
    ///
    /// - Throws: ``EditorError`` for an unknown method, a bad hyperparameter file, or a method
    ///   that needs statistics when `statistics` is nil.
    public static func make(
        _ name: String, config: TransformerConfig, hyperparameters file: URL? = nil, statistics: SecondMoments? = nil
    ) throws -> any Editor {
        /// The closure and label of `statistics` for a method that reads `layers`.
        func moments(_ method: String, layers: [Int]) throws -> SecondMoments {
            guard let statistics else { throw EditorError.statisticsMissing(method: method, layers: layers) }
            statistics.expect(layers: layers)
            return statistics
        }
        switch name.lowercased() {
        case "ft-l", "ft": return try FineTuning.make(.promptLast, config: config, file: file)
        case "ft-m": return try FineTuning.make(.targetNew, config: config, file: file)
        case "rome", "r-rome":
            var h = ROME.Hyperparameters.defaults(layerCount: config.layerCount)
            if let file {
                var reader = try HyperparameterReader(contentsOf: file)
                h = try ROME.Hyperparameters(reading: &reader, layerCount: config.layerCount)
            }
            guard h.mom2Adjustment else { return ROME(hyperparameters: h) }
            return ROME(hyperparameters: h, statistics: try moments("rome", layers: [h.layer]))
        case "memit", "alphaedit":
            let alpha = name.lowercased() == "alphaedit"
            var h = MassEditingHyperparameters.defaults(layerCount: config.layerCount, feedForwardSize: config.feedForwardSize)
            if let file {
                var reader = try HyperparameterReader(contentsOf: file)
                h = try MassEditingHyperparameters(reading: &reader, layerCount: config.layerCount,
                                                   feedForwardSize: config.feedForwardSize, alphaEdit: alpha)
            }
            let statistics = try moments(name.lowercased(), layers: h.layers)
            return alpha ? AlphaEdit(hyperparameters: h, statistics: statistics) : MEMIT(hyperparameters: h, statistics: statistics)
        case "ibke", "mend":
            throw EditorError.invalidHyperparameter(file: name, key: "editor", expected: "a trained editor (make(_:model:…) with an editor file)")
        default:
            throw EditorError.unknownMethod(name, known: names)
        }
    }
}
