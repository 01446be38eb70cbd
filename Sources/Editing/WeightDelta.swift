import Foundation
import ModelFormats
import Models
import TensorCore

/// The change an edit makes to a model's weights, kept apart from the weights themselves so
/// that it can be applied, reverted bitwise, saved, loaded and inspected.
///
/// Each entry changes one matrix (a ``ParameterID``) by `W ← W + ΔW`, stored densely or, for
/// methods that produce one (ROME, MEMIT, MEND, IBKE), as low-rank factors `ΔW = left · right`.
public struct WeightDelta: Sendable {
    public enum Update: Sendable {
        /// `ΔW` itself, shaped as the matrix.
        case dense(Tensor)
        /// `ΔW = left · right`, `left` `[out, r]`, `right` `[r, in]`.
        case lowRank(left: Tensor, right: Tensor)

        /// `[out, in]`.
        public var shape: [Int] {
            switch self {
            case .dense(let t): t.shape
            case .lowRank(let left, let right): [left.shape[0], right.shape[1]]
            }
        }

        /// `ΔW` as a dense matrix (a copy for low-rank updates, the tensor itself otherwise).
        public func materialized() -> Tensor {
            switch self {
            case .dense(let t): return t
            case .lowRank(let left, let right):
                let out = Tensor(zeros: shape)
                let (m, r, n) = (left.shape[0], left.shape[1], right.shape[1])
                MatMul.gemm(
                    m: m, n: n, k: r, a: left.pointer, lda: r, b: right.pointer, ldb: n,
                    c: out.pointer, ldc: n)
                return out
            }
        }
    }

    public struct Entry: Sendable {
        public var parameter: ParameterID
        public var update: Update
        public init(_ parameter: ParameterID, _ update: Update) {
            self.parameter = parameter
            self.update = update
        }
    }

    /// One entry per matrix, in the order they are applied.
    public var entries: [Entry]
    /// Who made the delta and for which model (`method`, `model_sha256`, `hyperparameters`,
    /// `requests`, …); saved in the file's header.
    public var metadata: [String: String]

    public init(entries: [Entry] = [], metadata: [String: String] = [:]) {
        self.entries = entries
        self.metadata = metadata
    }

    public var parameters: [ParameterID] { entries.map(\.parameter) }

    /// Adds another delta's entries (sequential edits combined into one file).
    public mutating func append(_ other: WeightDelta) {
        entries += other.entries
    }

    /// Frobenius norm of each entry's `ΔW`.
    public func norms() -> [ParameterID: Double] {
        var norms: [ParameterID: Double] = [:]
        for entry in entries {
            let t = entry.update.materialized()
            norms[entry.parameter, default: 0] += NormClipping.l2Norm(t)
        }
        return norms
    }
}

/// Errors of applying, saving and loading deltas.
public enum DeltaError: Error, CustomStringConvertible, Equatable {
    case unknownParameter(String, file: String)
    case shapeMismatch(parameter: String, delta: [Int], model: [Int], file: String)
    case notFinite(parameter: String, file: String)
    case wrongModel(deltaModel: String, model: String, file: String)
    case unverifiedModel(file: String)
    case malformed(file: String, detail: String)

    public var description: String {
        switch self {
        case .unknownParameter(let name, let file):
            "\(file): the model has no matrix \(name)"
        case .shapeMismatch(let name, let delta, let model, let file):
            "\(file): \(name) is \(delta) in the delta but \(model) in the model"
        case .notFinite(let name, let file):
            "\(file): the update of \(name) contains NaN or infinity"
        case .wrongModel(let deltaModel, let model, let file):
            "\(file): the delta was made for the model with sha256 \(deltaModel), not this one (\(model))"
        case .unverifiedModel(let file):
            "\(file): the delta does not say which model it was made for (no \(WeightDelta.modelHashKey) in its header)"
        case .malformed(let file, let detail):
            "\(file): \(detail)"
        }
    }
}

/// A delta applied to a transformer, with copies of the matrices it changed: ``revert()``
/// restores them bit for bit (adding `−ΔW` would not, in floating point). A matrix that was
/// still quantized goes back to its blocks instead (``WeightMatrix/restoreBlocks()``).
/// `@unchecked Sendable`: `revert()` writes the weights and `originals` unlocked; only the model's
/// owner (ModelHost's queue, one editing thread) calls it, while no pass runs.
public final class AppliedDelta: @unchecked Sendable {
    /// What a revert restores for one parameter.
    fileprivate enum Original {
        case values([Float])
        case blocks
    }

    public let transformer: Transformer
    public let delta: WeightDelta
    private var originals: [(ParameterID, Original)]
    public private(set) var isReverted = false

    fileprivate init(transformer: Transformer, delta: WeightDelta, originals: [(ParameterID, Original)]) {
        self.transformer = transformer
        self.delta = delta
        self.originals = originals
    }

    /// Restores the matrices as they were before ``Transformer/apply(_:source:)``. Deltas
    /// applied on top of this one must be reverted first (in reverse order).
    public func revert() {
        guard !isReverted else { return }
        for (id, original) in originals.reversed() {
            switch original {
            case .values(let values):
                let w = transformer.weights.tensor(id, config: transformer.config)!
                values.withUnsafeBufferPointer { w.pointer.update(from: $0.baseAddress!, count: $0.count) }
            case .blocks:
                transformer.weights.matrix(id, config: transformer.config)!.matrix.restoreBlocks()
            }
        }
        originals = []
        isReverted = true
    }
}

extension Transformer {
    /// Adds a delta to the weights in place, after checking every entry (names, shapes,
    /// finite values) so that a bad delta changes nothing.
    ///
    /// - Parameter source: the delta's file name, for error messages.
    /// - Returns: the handle that reverts the change.
    @discardableResult
    public func apply(_ delta: WeightDelta, source: String = "delta") throws -> AppliedDelta {
        var dense: [(ParameterID, Tensor)] = []
        for entry in delta.entries {
            guard !entry.parameter.isNorm, let shape = weights.shape(of: entry.parameter, config: config) else {
                throw DeltaError.unknownParameter(entry.parameter.name, file: source)
            }
            guard entry.update.shape == shape else {
                throw DeltaError.shapeMismatch(
                    parameter: entry.parameter.name, delta: entry.update.shape,
                    model: shape, file: source)
            }
            let d = entry.update.materialized()
            guard d.isFinite else { throw DeltaError.notFinite(parameter: entry.parameter.name, file: source) }
            dense.append((entry.parameter, d))
        }
        var originals: [(ParameterID, AppliedDelta.Original)] = []
        for (id, d) in dense {
            // The first write to a quantized matrix converts it to float32; reverting goes back to the blocks.
            let wasQuantized = weights.matrix(id, config: config)!.matrix.isQuantized
            let w = weights.tensor(id, config: config)!
            originals.append((id, wasQuantized ? .blocks : .values(Array(UnsafeBufferPointer(start: w.pointer, count: w.count)))))
            Kernels.add(d.pointer, into: w.pointer, count: w.count)
        }
        return AppliedDelta(transformer: self, delta: delta, originals: originals)
    }
}

extension [AppliedDelta] {
    /// Reverts every delta, the last applied first.
    func revertAll() {
        for a in reversed() { a.revert() }
    }
}

extension Transformer {
    /// Runs `count` steps, each on the weights with the earlier steps' deltas applied, and
    /// returns their deltas; the weights are left as they were. The last delta is not applied:
    /// no step reads it, and applying builds its ΔW and copies the matrices for nothing.
    func inTurn(_ count: Int, source: String, _ step: (Int) throws -> WeightDelta) throws -> [WeightDelta] {
        var applied: [AppliedDelta] = []
        defer { applied.revertAll() }
        var deltas: [WeightDelta] = []
        for i in 0..<count {
            let delta = try step(i)
            if i + 1 < count { applied.append(try apply(delta, source: source)) }
            deltas.append(delta)
        }
        return deltas
    }
}

extension ParameterID {
    /// Parses a canonical name (`blk.8.ffn_down.weight`).
    public init?(name: String) {
        let parts = name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", parts[3] == "weight", let layer = Int(parts[1]),
            let kind = Kind(rawValue: String(parts[2]))
        else { return nil }
        self.init(layer: layer, kind)
    }
}

extension Tensor {
    /// Whether every element is finite.
    var isFinite: Bool {
        var ok = true
        for i in 0..<count where !pointer[i].isFinite {
            ok = false
            break
        }
        return ok
    }
}

// MARK: Files

extension WeightDelta {
    /// The safetensors header key that marks a delta file, and its format version.
    static let formatKey = "ibke.format"
    static let formatValue = "ibke-delta-1"

    /// Writes the delta as safetensors, atomically: a dense entry as `NAME` (e.g.
    /// `blk.6.ffn_down.weight`), a low-rank one as `NAME.left` and `NAME.right`, and
    /// ``metadata`` in the header (with `ibke.format`).
    public func save(to url: URL) throws {
        var tensors: [SafetensorsWriter.Entry] = []
        var counts: [ParameterID: Int] = [:]
        var order: [String] = []
        for entry in entries {
            // Several entries for one matrix (sequential edits) get numbered suffixes.
            let n = counts[entry.parameter, default: 0]
            counts[entry.parameter] = n + 1
            let name = entry.parameter.name + (n == 0 ? "" : "#\(n)")
            order.append(name)
            switch entry.update {
            case .dense(let t):
                tensors.append(.init(name: name, shape: t.shape, floats: t.scalars))
            case .lowRank(let left, let right):
                tensors.append(.init(name: name + ".left", shape: left.shape, floats: left.scalars))
                tensors.append(.init(name: name + ".right", shape: right.shape, floats: right.scalars))
            }
        }
        var header = metadata
        header[Self.formatKey] = Self.formatValue
        header["ibke.order"] = order.joined(separator: ",")
        try SafetensorsWriter.write(tensors: tensors, metadata: header, to: url)
    }

    /// Reads a delta written by ``save(to:)``.
    ///
    /// - Throws: ``DeltaError/malformed(file:detail:)`` for a safetensors file that is not a
    ///   delta, or `SafetensorsError` for a damaged file.
    public static func load(from url: URL) throws -> WeightDelta {
        let file = try SafetensorsFile(url: url)
        let name = url.lastPathComponent
        guard file.metadata[formatKey] == formatValue else {
            throw DeltaError.malformed(file: name, detail: "not an IBKE delta (no \(formatKey) = \(formatValue) in the header)")
        }
        guard let order = file.metadata["ibke.order"] else {
            throw DeltaError.malformed(file: name, detail: "no ibke.order in the header")
        }
        func read(_ tensorName: String) throws -> Tensor {
            guard let shape = file.shape(of: tensorName), shape.count == 2 else {
                throw DeltaError.malformed(file: name, detail: "tensor \(tensorName) is missing or not a matrix")
            }
            let t = Tensor(zeros: shape)
            try file.readFloats(tensorName, into: UnsafeMutableBufferPointer(start: t.pointer, count: t.count))
            return t
        }
        var entries: [Entry] = []
        for key in order.split(separator: ",").map(String.init) {
            let base = String(key.split(separator: "#").first ?? "")
            guard let id = ParameterID(name: base) else {
                throw DeltaError.malformed(file: name, detail: "ibke.order names \(key), which is not a block matrix")
            }
            if file.shape(of: key) != nil {
                entries.append(Entry(id, .dense(try read(key))))
            } else {
                let left = try read(key + ".left")
                let right = try read(key + ".right")
                guard left.shape[1] == right.shape[0] else {
                    throw DeltaError.malformed(file: name, detail: "\(key): factors \(left.shape) and \(right.shape) do not multiply")
                }
                entries.append(Entry(id, .lowRank(left: left, right: right)))
            }
        }
        var metadata = file.metadata
        metadata[formatKey] = nil
        metadata["ibke.order"] = nil
        return WeightDelta(entries: entries, metadata: metadata)
    }
}
