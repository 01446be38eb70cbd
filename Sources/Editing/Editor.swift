import Foundation
import ModelFormats
import Models

/// A knowledge-editing method: turns edit requests into a ``WeightDelta`` for a model.
///
/// An editor computes and returns the delta and leaves the model as it found it ("the model
/// at the start of the function equals the model at the end"); applying and reverting are the
/// caller's (``Transformer/apply(_:source:)``). The model may already carry earlier edits
/// (sequential editing): the delta is relative to its current weights. Editors are classes
/// because some keep state across sequential calls (AlphaEdit's key cache).
public protocol Editor: AnyObject, Sendable {
    /// The method's name in runs and reports (`ft-l`, `rome`, …).
    var name: String { get }
    /// The hyperparameters in effect, recorded in every run and delta.
    var hyperparameters: JSONValue { get }
    /// Computes the delta that writes `requests` into `model`, all at once (a batch).
    func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta
}

extension Editor {
    /// Validates and tokenises requests, then edits.
    public func edit(_ requests: [EditRequest], in model: LanguageModel) throws -> WeightDelta {
        let prepared = try requests.enumerated().map { try $1.prepared(for: model, index: $0) }
        return try edit(prepared, in: model)
    }

    /// Metadata every delta carries: method, hyperparameters and requests.
    public func deltaMetadata(_ requests: [PreparedRequest], model: LanguageModel) -> [String: String] {
        [
            "ibke.method": name,
            "ibke.hyperparameters": hyperparameters.serialized(indent: 0),
            "ibke.requests": JSONValue.array(requests.map(\.request.json)).serialized(indent: 0),
            "ibke.model": model.url.lastPathComponent,
        ]
    }
}

extension EditRequest {
    /// The request as JSON (the keys of the JSONL edit format).
    public var json: JSONValue {
        var object: JSONObject = ["prompt": .string(prompt), "subject": .string(subject), "target_new": .string(targetNew)]
        if let targetTrue { object.updateValue(.string(targetTrue), forKey: "target_true") }
        return .object(object)
    }
}

/// Errors of editors: bad hyperparameters, a failed optimisation.
public enum EditorError: Error, CustomStringConvertible, Equatable {
    case invalidHyperparameter(file: String, key: String, expected: String)
    case unknownHyperparameter(file: String, key: String, known: [String])
    case layerOutOfRange(file: String, layer: Int, layers: Int)
    case notFinite(method: String, detail: String)

    public var description: String {
        switch self {
        case .invalidHyperparameter(let file, let key, let expected):
            "\(file): `\(key)`: expected \(expected)"
        case .unknownHyperparameter(let file, let key, let known):
            "\(file): unknown key `\(key)` (known: \(known.joined(separator: ", ")))"
        case .layerOutOfRange(let file, let layer, let layers):
            "\(file): layer \(layer) does not exist; the model has layers 0–\(layers - 1)"
        case .notFinite(let method, let detail):
            "\(method): \(detail) is NaN or infinite; no edit was made"
        }
    }
}
