import Foundation
import ModelFormats
import Models
import TensorCore

/// AlphaEdit, null-space-constrained editing (`jianghoucheng/AlphaEdit`; METHODS.md §4): MEMIT's
/// front end, with each layer's update projected onto the null space of the preserved keys,
///
///     (P (K Kᵀ + K_p K_pᵀ) + α I) M = P K,   ΔW = R Mᵀ,
///
/// where P projects on the eigenvectors of C with small eigenvalues and `K_p K_pᵀ` accumulates
/// the keys of earlier sequential batches (``commit(_:in:)``). Without earlier keys the F×F
/// solve reduces to an n×n one: `M = PK (KᵀPK + αI)⁻¹`.
///
/// The eigendecomposition of each C is cached on disk (keyed by the SHA-256 of C), so an edit
/// never recomputes it. Not for concurrent use.
/// `@unchecked Sendable`: the templates, projectors and key cache are unlocked; each owner
/// (ModelHost's queue, one evaluation thread) calls it from one thread at a time.
public final class AlphaEdit: Editor, @unchecked Sendable {
    public let name: String
    public let settings: MassEditingHyperparameters
    public var hyperparameters: JSONValue { settings.json(alphaEdit: true) }
    private let secondMoments: SecondMomentSource
    private var featureCount = 0
    private var templates: [String]?
    /// P per layer, `[F, F]` float64.
    private var projectors: [Int: [Double]] = [:]
    /// `K_p K_pᵀ` per layer, from committed batches.
    private var keyCache: [Int: [Double]] = [:]
    /// dim(null space) per layer, for reports (METHODS.md §4: τ is scale-dependent).
    public private(set) var nullSpaceDimensions: [Int: Int] = [:]

    /// Marks an eigendecomposition cache file (`ibke.format`).
    public static let eigenFormat = "ibke-eigen-1"

    /// - Parameter statistics: C of each edited layer; the eigendecompositions of C are cached
    ///   in its ``SecondMomentSource/cacheDirectory``.
    public init(name: String = "alphaedit", hyperparameters: MassEditingHyperparameters, statistics: SecondMomentSource) {
        self.name = name
        self.settings = hyperparameters
        self.secondMoments = statistics
    }

    /// The statistics' label, with the null-space dimension of each projector built so far.
    public var statistics: EditorStatistics {
        let dims = nullSpaceDescription
        return .labelled(
            secondMoments.label() + (dims.isEmpty ? "" : "; null space \(dims) of \(settings.layers.isEmpty ? 0 : featureCount)"))
    }

    public func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
        let contexts = try contexts(requests, model: model)
        let alpha = settings.l2
        let entries = try MassEditing.edit(
            requests, contexts: contexts, model: model, hyperparameters: settings,
            method: name
        ) { layer, targets in
            try Self.update(
                targets, projector: try self.projector(layer, model: model), keyCache: self.keyCache[layer],
                alpha: alpha)
        }
        var delta = WeightDelta(entries: entries, metadata: deltaMetadata(requests, model: model))
        delta.metadata["ibke.alphaedit.null_space"] = nullSpaceDescription
        return delta
    }

    /// `ΔW = R Mᵀ` with `(P (KKᵀ + cache) + αI) M = P K`; without a cache by the n×n form.
    static func update(
        _ targets: MassEditing.LayerTargets, projector p: [Double], keyCache: [Double]?, alpha: Double
    ) throws
        -> (left: Tensor, right: Tensor)
    {
        let n = targets.keys.count
        let f = targets.keys[0].count
        let keyRows = targets.keys.flatMap { $0.map(Double.init) }  // [n, F]
        let projectedRows = DenseSolve.multiply(keyRows, p, m: n, n: f, k: f)  // (PK)ᵀ, P symmetric
        let right: [Double]
        if let keyCache {
            var s = DenseSolve.multiply(keyRows, keyRows, m: f, n: f, k: n, transposeA: true)
            for i in 0..<(f * f) { s[i] += keyCache[i] }
            var a = DenseSolve.multiply(p, s, m: f, n: f, k: f)
            for i in 0..<f { a[i * f + i] += alpha }
            right = try DenseSolve.general(a, order: f, rightHandSides: projectedRows, count: n)  // rows of Mᵀ
        } else {
            var h = DenseSolve.multiply(keyRows, projectedRows, m: n, n: n, k: f, transposeB: true)  // KᵀPK
            for i in 0..<n { h[i * n + i] += alpha }
            let solved = try DenseSolve.general(
                h, order: n, rightHandSides: MassEditing.transpose(projectedRows, rows: n, columns: f),
                count: f)
            right = MassEditing.transpose(solved, rows: f, columns: n)
        }
        return (MassEditing.left(targets.residuals), Tensor(shape: [n, f], values: right.map { Float($0) }))
    }

    /// Adds the keys of the batch just applied, recomputed on the edited model, to the cache
    /// that later batches preserve.
    public func commit(_ requests: [PreparedRequest], in model: LanguageModel) throws {
        let contexts = try contexts(requests, model: model)
        let hooks = settings.layers.map { HookKey(.feedForwardHidden, layer: $0) }
        let captured = try LocateThenEdit.subjectActivations(contexts.flatMap { $0 }, at: hooks, model: model)
        let f = model.config.feedForwardSize
        for hook in hooks {
            let keys = LocateThenEdit.meanPerRequest(captured[hook]!, contexts: contexts)
            let keyRows = keys.flatMap { $0.map(Double.init) }
            let outer = DenseSolve.multiply(keyRows, keyRows, m: f, n: f, k: keys.count, transposeA: true)
            keyCache[hook.layer] = zip(keyCache[hook.layer] ?? [Double](repeating: 0, count: f * f), outer).map { $0 + $1 }
        }
    }

    /// Forgets committed keys (a new sequence of edits).
    public func reset() { keyCache = [:] }

    /// `L4 914/1536, L5 …`: the null-space dimension of each layer's projector built so far.
    public var nullSpaceDescription: String {
        nullSpaceDimensions.keys.sorted().map { "L\($0) \(nullSpaceDimensions[$0]!)" }.joined(separator: ", ")
    }

    private func contexts(_ requests: [PreparedRequest], model: LanguageModel) throws -> [[PreparedRequest]] {
        try MassEditing.contexts(
            requests, templates: &templates, seed: settings.seed, variants: settings.optimization.promptVariants, model: model)
    }

    /// P = Û Ûᵀ over the eigenvectors of C below the threshold (or within the fraction of tr(C)).
    private func projector(_ layer: Int, model: LanguageModel) throws -> [Double] {
        if let cached = projectors[layer] { return cached }
        let (values, vectors) = try Self.eigendecomposition(
            try secondMoments.matrix(layer),
            cacheDirectory: secondMoments.cacheDirectory)
        let (p, kept) = Self.projector(
            values: values, vectors: vectors, threshold: settings.nullspaceThreshold,
            fraction: settings.nullspaceFraction)
        projectors[layer] = p
        nullSpaceDimensions[layer] = kept
        featureCount = values.count
        return p
    }

    /// `Û Ûᵀ` (float64) over the eigenvectors whose eigenvalues are below `threshold`, or, with
    /// a `fraction`, the smallest ones summing to at most that fraction of the trace; and their count.
    static func projector(values: [Float], vectors: Tensor, threshold: Double, fraction: Double?) -> ([Double], Int) {
        let f = values.count
        var kept = 0
        if let fraction {
            let budget = fraction * values.reduce(0) { $0 + Double($1) }
            var sum = 0.0
            while kept < f, sum + Double(values[kept]) <= budget {
                sum += Double(values[kept])
                kept += 1
            }
        } else {
            kept = values.prefix { Double($0) < threshold }.count
        }
        let basis = (0..<(kept * f)).map { Double(vectors.pointer[$0]) }  // the first `kept` rows, ascending eigenvalues
        return (DenseSolve.multiply(basis, basis, m: f, n: f, k: kept, transposeA: true), kept)
    }

    /// Eigenvalues (ascending) and eigenvectors (rows) of C, from the cache when present.
    static func eigendecomposition(_ c: Tensor, cacheDirectory: URL?) throws -> (values: [Float], vectors: Tensor) {
        let hash = c.scalars.withUnsafeBytes { SHA256.hex($0) }
        let n = c.shape[0]
        let url = cacheDirectory?.appendingPathComponent("eigen-\(hash.prefix(16)).safetensors")
        if let url, FileManager.default.fileExists(atPath: url.path) {
            let file = try SafetensorsFile(url: url)
            guard file.metadata["ibke.format"] == eigenFormat, file.metadata["ibke.matrix_sha256"] == hash,
                file.shape(of: "values") == [n], file.shape(of: "vectors") == [n, n]
            else {
                throw StatisticsError.malformed(
                    file: url.path, detail: "not the eigendecomposition of this second moment (\(eigenFormat), SHA-256 \(hash))")
            }
            return (try file.readFloats("values"), Tensor(shape: [n, n], values: try file.readFloats("vectors")))
        }
        let (values, vectors) = try DenseSolve.symmetricEigen(c)
        if let url, let directory = cacheDirectory {
            try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try SafetensorsWriter.write(
                tensors: [
                    .init(name: "values", shape: [n], floats: values), .init(name: "vectors", shape: [n, n], floats: vectors.scalars),
                ],
                metadata: [
                    "ibke.format": eigenFormat, "ibke.matrix_sha256": hash,
                    "ibke.statistic": "eigendecomposition of a second moment C (ssyevd): values ascending, vectors as rows",
                ],
                to: url)
        }
        return (values, vectors)
    }
}
