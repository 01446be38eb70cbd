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
    /// Where the editor's second-moment statistics come from, for runs, reports and delta
    /// metadata; ``EditorStatistics/none`` for methods that use none (the default).
    var statistics: EditorStatistics { get }
    /// Computes the delta that writes `requests` into `model`, all at once (a batch).
    func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta
    /// Called after the caller applied this editor's delta for `requests` in sequential editing;
    /// editors that remember earlier edits (AlphaEdit's key cache) update their state here. The
    /// default does nothing.
    func commit(_ requests: [PreparedRequest], in model: LanguageModel) throws
}

/// The second-moment statistics an editor works with, as its runs and deltas record them.
public enum EditorStatistics: Sendable, Equatable, CustomStringConvertible {
    /// The method uses none (fine-tuning, the hypernetworks, ROME with `mom2_adjustment` off).
    case none
    /// The method needs statistics that were not given.
    case missing
    /// Statistics described by their ``SecondMoments/label`` (corpus, hash, tokens), and for
    /// AlphaEdit its null spaces.
    case labelled(String)

    public var description: String {
        switch self {
        case .none: "none"
        case .missing: "missing"
        case .labelled(let label): label
        }
    }
}

extension Editor {
    public var statistics: EditorStatistics { .none }
    public func commit(_ requests: [PreparedRequest], in model: LanguageModel) throws {}
}

extension Editor {
    /// Validates and tokenises requests, then edits.
    public func edit(_ requests: [EditRequest], in model: LanguageModel) throws -> WeightDelta {
        let prepared = try requests.enumerated().map { try $1.prepared(for: model, index: $0) }
        return try edit(prepared, in: model)
    }

    /// Metadata every delta carries: method, hyperparameters, statistics and requests.
    public func deltaMetadata(_ requests: [PreparedRequest], model: LanguageModel) -> [String: String] {
        [
            "ibke.method": name,
            "ibke.hyperparameters": hyperparameters.serialized(indent: 0),
            "ibke.statistics": statistics.description,
            "ibke.requests": JSONValue.array(requests.map(\.request.json)).serialized(indent: 0),
            "ibke.model": model.url.lastPathComponent,
        ]
    }
}

/// Edits applied one after another (``Editor/editSequentially(_:in:afterEach:)``): the handles
/// that revert them, and one delta with all their entries in order.
public struct SequentialEdits: Sendable {
    /// One handle per request, in order; revert in reverse order (``revert()``).
    public var applied: [AppliedDelta] = []
    /// The entries of every request's delta in the order they were applied, with the metadata
    /// of the whole sequence: applying it to the unedited model gives the same weights, bit for
    /// bit (``Transformer/apply(_:source:)`` adds entries in order, as the sequence did).
    public var delta: WeightDelta

    /// Reverts every edit, the last first.
    public func revert() {
        applied.revertAll()
    }
}

extension Editor {
    /// Edits `requests` one at a time, each on the model with the earlier ones applied: edit,
    /// apply, ``commit(_:in:)``, next. The edits stay applied; revert them with the result's
    /// ``SequentialEdits/revert()``. On an error the edits made so far are reverted.
    ///
    /// - Parameter afterEach: called with the request's index and its applied delta, once it is
    ///   applied and committed (progress, measurements between edits).
    public func editSequentially(
        _ requests: [PreparedRequest], in model: LanguageModel,
        afterEach: (Int, AppliedDelta) throws -> Void = { _, _ in }
    ) throws -> SequentialEdits {
        var result = SequentialEdits(delta: WeightDelta())
        do {
            for (i, request) in requests.enumerated() {
                let delta = try edit([request], in: model)
                let applied = try model.transformer.apply(delta, source: name)
                result.applied.append(applied)
                try commit([request], in: model)
                result.delta.append(delta)
                try afterEach(i, applied)
            }
        } catch {
            result.revert()
            throw error
        }
        result.delta.metadata = deltaMetadata(requests, model: model)
        result.delta.metadata["ibke.protocol"] = "sequential"
        return result
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
    case unknownMethod(String, known: [String])

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
        case .unknownMethod(let name, let known):
            "unknown editing method \(name) (known: \(known.joined(separator: ", ")))"
        }
    }
}

extension EditorError {
    /// A method with `mom2_adjustment` on that was given no second-moment statistics.
    public static func statisticsMissing(method: String, layers: [Int]) -> EditorError {
        .invalidHyperparameter(
            file: method, key: "mom2_adjustment",
            expected: "second-moment statistics for layer\(layers.count == 1 ? "" : "s") \(layers.map(String.init).joined(separator: ","))"
                + " (a SecondMoments for EditorRegistry.make), or mom2_adjustment: false")
    }
}
