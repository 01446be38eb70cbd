import Foundation
import Models
import TensorCore

/// An editing method `ibke` knows.
public enum EditingMethod: String, CaseIterable, Sendable, CustomStringConvertible {
    case ftL = "ft-l"
    case ftM = "ft-m"
    case rome, memit
    case alphaEdit = "alphaedit"
    case ibke, mend

    /// Other names accepted for the method (EasyEdit's).
    public var aliases: [String] {
        switch self {
        case .ftL: ["ft"]
        case .rome: ["r-rome"]
        default: []
        }
    }

    /// The method of a name or alias, in any case.
    public init?(name: String) {
        let name = name.lowercased()
        guard let method = Self.allCases.first(where: { $0.rawValue == name || $0.aliases.contains(name) }) else { return nil }
        self = method
    }

    /// The name `ibke` uses (`ft-m`, `alphaedit`, …).
    public var description: String { rawValue }

    /// The method of a name or alias, in any case; an unknown name is an error that lists the
    /// known ones.
    public init(parsing name: String) throws {
        guard let method = Self(name: name) else { throw EditorError.unknownMethod(name, known: Self.namesWithAliases) }
        self = method
    }

    /// Whether the method applies a trained editor network (``HypernetworkEditor``).
    public var isTrained: Bool { self == .ibke || self == .mend }

    /// Every accepted name, aliases in parentheses: `ft-l (ft), ft-m, rome (r-rome), …`.
    public static let namesWithAliases =
        allCases
        .map { $0.aliases.isEmpty ? $0.rawValue : "\($0.rawValue) (\($0.aliases.joined(separator: ", ")))" }

    /// The methods that apply a trained editor network.
    public static let trained = allCases.filter(\.isTrained)
}

/// The editors of the methods `ibke` knows, with their defaults for a model.
public enum EditorRegistry {
    /// The editor of `method` for `model`: as ``make(_:config:hyperparameters:statistics:)``, and for
    /// the trained methods (`ibke`, `mend`) the editor in `editorFile`.
    ///
    /// - Throws: ``HypernetworkError`` for an editor file made for another model or of
    ///   another method, and what the other `make` throws.
    public static func make(
        _ method: EditingMethod, model: LanguageModel, hyperparameters file: URL? = nil, statistics: SecondMoments? = nil,
        editorFile: URL? = nil
    ) throws -> any Editor {
        guard method.isTrained else {
            return try make(method, config: model.config, hyperparameters: file, statistics: statistics)
        }
        guard let editorFile else {
            throw EditorError.invalidHyperparameter(
                file: method.rawValue, key: "editor", expected: "a trained editor file")
        }
        if try ValueStepEditor.isEditorFile(editorFile) {
            guard method == .ibke else {
                throw HypernetworkError.malformed(
                    file: editorFile.lastPathComponent, detail: "it holds an ibke editor, not \(method.rawValue)")
            }
            let h = MassEditingHyperparameters.defaults(layerCount: model.config.layerCount, feedForwardSize: model.config.feedForwardSize)
            guard let statistics else { throw EditorError.statisticsMissing(method: method.rawValue, layers: h.layers) }
            statistics.expect(layers: h.layers)
            let editor = try ValueStepEditor.load(from: editorFile, for: model, statistics: SecondMomentSource(statistics))
            guard let file else { return editor }
            var reader = try HyperparameterReader(contentsOf: file)
            return try editor.overriding(&reader)
        }
        let editor = try HypernetworkEditor.load(from: editorFile, for: model)
        guard editor.name == method.rawValue else {
            throw HypernetworkError.malformed(
                file: editorFile.lastPathComponent, detail: "it holds a \(editor.name) editor, not \(method.rawValue)")
        }
        if let file {
            var reader = try HyperparameterReader(contentsOf: file)
            try editor.overrideEditSettings(&reader)
        }
        return editor
    }

    /// The editor of `method`, with the defaults for `config` or the hyperparameters in `file`.
    ///
    /// Methods that use second moments (ROME with `mom2_adjustment`, its default) take them from
    /// `statistics`, one object shared by every editor of the model, and announce their layers
    /// to it (``SecondMoments/expect(layers:)``), so that a caller can collect them all in one
    /// pass before editing (``SecondMoments/prepare(layers:)`` with
    /// ``SecondMoments/expectedLayers``).
    ///
    /// - Throws: ``EditorError`` for a bad hyperparameter file, a trained method (which needs
    ///   a model and an editor file), or a method that needs statistics when `statistics` is nil.
    public static func make(
        _ method: EditingMethod, config: TransformerConfig, hyperparameters file: URL? = nil, statistics: SecondMoments? = nil
    ) throws -> any Editor {
        /// The matrices and label of `statistics` for a method that reads `layers`.
        func moments(_ method: String, layers: [Int]) throws -> SecondMomentSource {
            guard let statistics else { throw EditorError.statisticsMissing(method: method, layers: layers) }
            statistics.expect(layers: layers)
            return SecondMomentSource(statistics)
        }
        switch method {
        case .ftL: return try FineTuning.make(.promptLast, config: config, file: file)
        case .ftM: return try FineTuning.make(.targetNew, config: config, file: file)
        case .rome:
            var h = ROME.Hyperparameters.defaults(layerCount: config.layerCount)
            if let file {
                var reader = try HyperparameterReader(contentsOf: file)
                h = try ROME.Hyperparameters(reading: &reader, layerCount: config.layerCount)
            }
            guard h.mom2Adjustment else { return ROME(hyperparameters: h) }
            return ROME(hyperparameters: h, statistics: try moments("rome", layers: [h.layer]))
        case .memit, .alphaEdit:
            let alpha = method == .alphaEdit
            var h = MassEditingHyperparameters.defaults(layerCount: config.layerCount, feedForwardSize: config.feedForwardSize)
            if let file {
                var reader = try HyperparameterReader(contentsOf: file)
                h = try MassEditingHyperparameters(
                    reading: &reader, layerCount: config.layerCount,
                    feedForwardSize: config.feedForwardSize, alphaEdit: alpha)
            }
            let statistics = try moments(method.rawValue, layers: h.layers)
            return alpha ? AlphaEdit(hyperparameters: h, statistics: statistics) : MEMIT(hyperparameters: h, statistics: statistics)
        case .ibke, .mend:
            throw EditorError.invalidHyperparameter(
                file: method.rawValue, key: "editor", expected: "a trained editor (make(_:model:…) with an editor file)")
        }
    }
}
