import Foundation
import ModelFormats
import Models
import TensorCore

/// Hyperparameters shared by MEMIT and AlphaEdit (METHODS.md §3–4), read with the reference
/// implementations' key names.
public struct MassEditingHyperparameters: Sendable, Equatable, LocateThenEditHyperparameters {
    /// The band of layers whose `ffn_down` is edited; the target z lives at the last one.
    public var layers = [4, 5, 6, 7, 8]
    public var vLossLayer: Int
    /// lr 1.0 and clamp 4 (the references: 0.5 and 0.75; EasyEdit's Llama-2 MEMIT: clamp 4):
    /// with the reference values z did not reach multi-token zsRE targets on SmolLM2
    /// (Docs/locate-then-edit.md).
    public var optimization = ValueOptimizationSettings(steps: 25, learningRate: 1.0, clampNormFactor: 4.0)
    /// MEMIT's λ, the weight of the preserved keys' second moment. A key drawn from C has
    /// `kᵀC⁻¹k ≈ F`, so the share of the residual one layer writes is about `(F/λ)/(1 + F/λ)`:
    /// λ scales with F to keep GPT-J's share (λ 15,000 at F 16,384), see ``lambda(feedForwardSize:)``.
    public var mom2UpdateWeight = 1_400.0
    /// AlphaEdit: eigenvalues of C below this span the null space (absolute, as the reference).
    /// 1.5e-2, not the reference's 2e-2: SmolLM2's key spectrum is flat, and 2e-2 lets 500
    /// sequential edits cost 13% of fluency, 1.5e-2 9.5% at ES 96 (Docs/results/README.md, sequential editing).
    public var nullspaceThreshold = 1.5e-2
    /// AlphaEdit option: instead, the smallest eigenvalues summing to at most this fraction of tr(C).
    public var nullspaceFraction: Double?
    /// AlphaEdit's α (`L2`).
    public var l2 = 10.0
    public var seed: UInt64 = 42

    /// The SmolLM2 defaults (METHODS.md §7, tuned as noted); for another depth, five layers
    /// from 13% of it; λ from the MLP width.
    public static func defaults(layerCount: Int, feedForwardSize: Int = 1536) -> MassEditingHyperparameters {
        var h = MassEditingHyperparameters(vLossLayer: layerCount - 1)
        if layerCount != 30 {
            let first = max(0, Int((Double(layerCount) * 0.13).rounded()))
            h.layers = Array(first..<min(layerCount - 1, first + 5))
        }
        h.mom2UpdateWeight = lambda(feedForwardSize: feedForwardSize)
        return h
    }

    /// GPT-J's λ/F (15,000 / 16,384), rounded to 100: 1,400 for SmolLM2's F = 1,536.
    public static func lambda(feedForwardSize f: Int) -> Double {
        max(100, (15_000 * Double(f) / 16_384 / 100).rounded() * 100)
    }

    init(vLossLayer: Int) { self.vLossLayer = vLossLayer }

    /// - Parameter alphaEdit: whether the AlphaEdit keys (`nullspace_threshold`, `L2`) are known.
    public init(reading reader: inout HyperparameterReader, layerCount: Int, feedForwardSize: Int = 1536, alphaEdit: Bool) throws {
        self = .defaults(layerCount: layerCount, feedForwardSize: feedForwardSize)
        layers = try reader.ints("layers", default: layers).sorted()
        guard !layers.isEmpty else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "layers", expected: "at least one layer")
        }
        try reader.checkDistinct(layers)
        try reader.checkLayers(layers, layerCount: layerCount)
        guard layers.last! < layerCount - 1 else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "layers",
                expected: "layers below the last (\(layerCount - 1)): z at the last layer's output reaches no later position")
        }
        try readShared(&reader, layers: layers, layerCount: layerCount, ignoring: "batch_size", "max_length")
        let selection = try reader.string("layer_selection", default: "all")
        guard selection == "all" else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "layer_selection", expected: "all")
        }
        guard try reader.bool("mom2_adjustment", default: true) else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "mom2_adjustment",
                expected: "true (MEMIT and AlphaEdit always use the second moment)")
        }
        if alphaEdit {
            nullspaceThreshold = try reader.double("nullspace_threshold", default: nullspaceThreshold)
            nullspaceFraction = try reader.optionalDouble("nullspace_fraction", default: nil)
            l2 = try reader.double("L2", "l2", default: l2)
            reader.ignore("mom2_update_weight")  // listed in AlphaEdit's configs, unused (METHODS.md §4)
        } else {
            mom2UpdateWeight = try reader.double("mom2_update_weight", default: mom2UpdateWeight)
        }
        try reader.finish()
    }

    func json(alphaEdit: Bool) -> JSONValue {
        var object = sharedJSON(
            layers: layers,
            [
                "mom2_adjustment": .bool(true), "context_templates": .string("{} + 5 × 10 tokens from The/Therefore/Because/I/You"),
            ])
        if alphaEdit {
            object.updateValue(.double(nullspaceThreshold), forKey: "nullspace_threshold")
            if let nullspaceFraction { object.updateValue(.double(nullspaceFraction), forKey: "nullspace_fraction") }
            object.updateValue(.double(l2), forKey: "L2")
        } else {
            object.updateValue(.double(mom2UpdateWeight), forKey: "mom2_update_weight")
        }
        return .object(object)
    }

    /// z: δ added to the residual stream of the last edited layer.
    func valueOptimization(method: String) -> ValueOptimization {
        valueOptimization(at: .layerOutput, layer: layers.last!, method: method)
    }
}

/// The front end MEMIT and AlphaEdit share (`memit_main.py`): the target residual z of each
/// request at the last edited layer, then, layer by layer from the lowest, the keys and the
/// remaining residual error on the model as edited so far, and a per-layer solve that spreads
/// the error over the layers left.
enum MassEditing {
    /// The keys of one layer (the mean over contexts per request) and the residual error this
    /// layer should remove: `K` `[n, F]` and `R` `[n, C]` as rows per request.
    struct LayerTargets {
        var keys: [[Float]]
        var residuals: [[Float]]
    }

    /// Edits `requests` over `h.layers`; `solve(layer, targets)` returns the layer's update as
    /// `(left [C, n], right [n, F])` with `ΔW = left · right`. The model is left unchanged.
    static func edit(
        _ requests: [PreparedRequest], contexts: [[PreparedRequest]], model: LanguageModel,
        hyperparameters h: MassEditingHyperparameters, method: String, stepper: ValueStepper? = nil, stepperReads: Int? = nil,
        solve: (Int, LayerTargets) throws -> (left: Tensor, right: Tensor)
    ) throws -> [WeightDelta.Entry] {
        var optimization = h.valueOptimization(method: method)
        optimization.stepper = stepper
        optimization.stepperReads = stepperReads
        let z = try optimization.run(requests, contexts: contexts, model: model).values
        let top = h.layers.last!
        // Each layer on the model with the lower layers' updates.
        let updates = try model.transformer.inTurn(h.layers.count, source: method) { i in
            let layer = h.layers[i]
            let activations = try subjectActivations(contexts, keyLayer: layer, residualLayer: top, model: model)
            let remaining = Float(h.layers.count - i)
            var residuals = zip(z, activations.residuals).map { target, current in zip(target, current).map { ($0 - $1) / remaining } }
            if let norm = model.transformer.weights.blocks[layer].postFeedForwardNorm, let outputs = activations.outputs {
                // Gemma: the MLP output reaches the residual through a norm; write the output
                // change that moves the norm's output by the residual.
                residuals = zip(residuals, outputs).map { r, m in
                    normInputChange(moving: r, output: m, weight: norm.scalars, epsilon: model.config.normEpsilon)
                }
            }
            let (left, right) = try solve(layer, LayerTargets(keys: activations.keys, residuals: residuals))
            guard left.scalars.allSatisfy(\.isFinite), right.scalars.allSatisfy(\.isFinite) else {
                throw EditorError.notFinite(method: method, detail: "the update of layer \(layer)")
            }
            return WeightDelta(entries: [.init(ParameterID(layer: layer, .feedForwardDown), .lowRank(left: left, right: right))])
        }
        return updates.flatMap(\.entries)
    }

    /// Each request in every MEMIT template, then its `variants` rewordings; the templates are
    /// generated on first use and kept.
    static func contexts(
        _ requests: [PreparedRequest], templates: inout [String]?, seed: UInt64, variants: Int, model: LanguageModel
    ) throws
        -> [[PreparedRequest]]
    {
        let generated = try templates ?? ContextTemplates.generate(model, seed: seed)
        templates = generated
        return try requests.map {
            try LocateThenEdit.inContexts($0, templates: generated, variants: variants, seed: seed, model: model)
        }
    }

    /// Per request: the key at `keyLayer` averaged over its contexts, and the residual at
    /// `residualLayer` on the bare prompt (context 0), both at the subject's last token; with
    /// output norms, also the MLP output of `keyLayer` before its norm (bare prompt).
    static func subjectActivations(
        _ contexts: [[PreparedRequest]], keyLayer: Int, residualLayer: Int, model: LanguageModel
    ) throws -> (keys: [[Float]], residuals: [[Float]], outputs: [[Float]]?) {
        let all = contexts.flatMap { $0 }
        let keyPoint = HookKey(.feedForwardHidden, layer: keyLayer)
        let residualPoint = HookKey(.layerOutput, layer: residualLayer)
        let outputPoint = HookKey(.feedForwardOutput, layer: keyLayer)
        let points = model.config.outputNorms ? [keyPoint, residualPoint, outputPoint] : [keyPoint, residualPoint]
        let captured = try LocateThenEdit.subjectActivations(all, at: points, model: model)
        var residuals: [[Float]] = []
        var outputs: [[Float]] = []
        var row = 0
        for group in contexts {
            residuals.append(captured[residualPoint]![row])
            if let rows = captured[outputPoint] { outputs.append(rows[row]) }
            row += group.count
        }
        return (
            LocateThenEdit.meanPerRequest(captured[keyPoint]!, contexts: contexts), residuals,
            model.config.outputNorms ? outputs : nil
        )
    }

    /// The change of `m`, the input of an RMSNorm with weight `w` (Gemma's post-feed-forward
    /// norm), that moves the norm's output `y = w ⊙ m / rms(m)` by `r`, as closely as any input can.
    ///
    /// The outputs an input can reach are `w ⊙ v` with `rms(v) = 1` (the norm drops the scale).
    /// The closest to `y + r` is `v = w ⊙ (y + r) / (w² + λ)` with the `λ` that puts `rms(v)` at 1
    /// (a Lagrange multiplier, found by bisection: `rms(v)` falls as `λ` grows); the new input
    /// is `v` at `m`'s scale, so the key write changes the output no more than it has to.
    static func normInputChange(moving r: [Float], output m: [Float], weight w: [Float], epsilon: Float) -> [Float] {
        let c = Double(m.count)
        let meanSquare = m.reduce(0.0) { $0 + Double($1) * Double($1) } / c
        let rms = (meanSquare + Double(epsilon)).squareRoot()
        let wanted = m.indices.map { Double(w[$0]) * Double(m[$0]) / rms + Double(r[$0]) }
        let squares = w.map { Double($0) * Double($0) }
        func v(_ lambda: Double) -> [Double] {
            squares.indices.map { j in squares[j] + lambda > 0 ? Double(w[j]) * wanted[j] / (squares[j] + lambda) : 0 }
        }
        func rmsOf(_ lambda: Double) -> Double { (v(lambda).reduce(0) { $0 + $1 * $1 } / c).squareRoot() }
        var low = -(squares.filter { $0 > 0 }.min() ?? 0) * (1 - 1e-12)
        var high = max(1, squares.max() ?? 1)
        while rmsOf(high) > 1 { high *= 4 }
        if rmsOf(low) > 1 {
            for _ in 0..<200 {
                let middle = (low + high) / 2
                if rmsOf(middle) > 1 { low = middle } else { high = middle }
            }
        } else {
            high = low
        }
        let scale = meanSquare.squareRoot()
        return zip(v(high), m).map { Float($0 * scale - Double($1)) }
    }

    /// `[n, F]` rows as the transposed `[F, n]`, in float64.
    static func columns(_ rows: [[Float]]) -> [Double] {
        let n = rows.count
        let f = rows.first?.count ?? 0
        var out = [Double](repeating: 0, count: f * n)
        for (r, row) in rows.enumerated() { for j in 0..<f { out[j * n + r] = Double(row[j]) } }
        return out
    }

    static func transpose(_ a: [Double], rows: Int, columns: Int) -> [Double] {
        var out = [Double](repeating: 0, count: a.count)
        for i in 0..<rows { for j in 0..<columns { out[j * rows + i] = a[i * columns + j] } }
        return out
    }

    /// The update's left factor: the residuals as columns, `[C, n]`.
    static func left(_ residuals: [[Float]]) -> Tensor {
        Tensor(shape: [residuals.first!.count, residuals.count], values: columns(residuals).map { Float($0) })
    }
}

/// MEMIT, mass editing over a band of layers (`kmeng01/memit`; METHODS.md §3): per layer,
/// `ΔW = R Kᵀ (λC + K Kᵀ)⁻¹`, solved in float64. With the Cholesky factor of C cached per
/// layer, each edit needs only an `n × n` solve (Woodbury:
/// `(λC + KKᵀ)⁻¹K = (λC)⁻¹K (I + Kᵀ(λC)⁻¹K)⁻¹`).
/// Not for concurrent use (it caches templates and factors of its model).
/// `@unchecked Sendable`: the caches are unlocked; each owner (ModelHost's queue, one evaluation
/// thread) calls it from one thread at a time.
public final class MEMIT: Editor, @unchecked Sendable {
    public let name: String
    public let settings: MassEditingHyperparameters
    public var hyperparameters: JSONValue { settings.json(alphaEdit: false) }
    let secondMoments: SecondMomentSource
    private var templates: [String]?
    private var factors: [Int: DenseSolve.CholeskyFactor] = [:]
    /// IBKE's learned value steps in place of Adam (``ValueStepEditor``), for all the steps or,
    /// with `valueStepReads`, for that many before Adam continues.
    let valueSteps: ValueStepNetwork?
    let valueStepReads: Int?

    /// - Parameter statistics: C of each edited layer.
    public convenience init(name: String = "memit", hyperparameters: MassEditingHyperparameters, statistics: SecondMomentSource) {
        self.init(name: name, hyperparameters: hyperparameters, statistics: statistics, valueSteps: nil)
    }

    init(
        name: String, hyperparameters: MassEditingHyperparameters, statistics: SecondMomentSource, valueSteps: ValueStepNetwork?,
        valueStepReads: Int? = nil
    ) {
        self.name = name
        self.settings = hyperparameters
        self.secondMoments = statistics
        self.valueSteps = valueSteps
        self.valueStepReads = valueStepReads
    }

    public var statistics: EditorStatistics { .labelled(secondMoments.label()) }

    public func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
        let contexts = try MassEditing.contexts(
            requests, templates: &templates, seed: settings.seed, variants: settings.optimization.promptVariants, model: model)
        let lambda = settings.mom2UpdateWeight
        let entries = try MassEditing.edit(
            requests, contexts: contexts, model: model, hyperparameters: settings,
            method: name, stepper: valueSteps?.stepper(), stepperReads: valueStepReads
        ) { layer, targets in
            try Self.update(targets, factor: try self.factor(layer), lambda: lambda)
        }
        return WeightDelta(entries: entries, metadata: deltaMetadata(requests, model: model))
    }

    /// `ΔW = R Xᵀ` with `X = (λC + KKᵀ)⁻¹ K`, by Woodbury from the factor of C.
    static func update(
        _ targets: MassEditing.LayerTargets, factor: DenseSolve.CholeskyFactor, lambda: Double
    ) throws
        -> (left: Tensor, right: Tensor)
    {
        let keyRows = targets.keys.flatMap { $0.map(Double.init) }  // [n, F]
        let right = try writeKeys(keyRows, count: targets.keys.count, factor: factor, lambda: lambda)
        return (MassEditing.left(targets.residuals), right)
    }

    /// The update's right factor `Xᵀ` `[n, F]`, `X = (λC + KKᵀ)⁻¹ K` for the `n` key rows `K`
    /// `[n, F]`: `ΔW = R Xᵀ` writes the residual columns `R` at the keys, least-squares against
    /// the preserved keys of C.
    static func writeKeys(_ keyRows: [Double], count n: Int, factor: DenseSolve.CholeskyFactor, lambda: Double) throws -> Tensor {
        let f = factor.order
        let y = factor.solve(keyRows, count: n).map { $0 / lambda }  // rows: (λC)⁻¹k
        var gram = DenseSolve.multiply(keyRows, y, m: n, n: n, k: f, transposeB: true)  // I + Kᵀ(λC)⁻¹K
        for i in 0..<n { gram[i * n + i] += 1 }
        // Xᵀ = G⁻¹ Yᵀ (G symmetric), solved for each of the F columns of Yᵀ.
        let solved = try DenseSolve.general(
            gram, order: n, rightHandSides: MassEditing.transpose(y, rows: n, columns: f),
            count: f)  // [F, n]
        let right = MassEditing.transpose(solved, rows: f, columns: n)
        return Tensor(shape: [n, f], values: right.map { Float($0) })
    }

    /// The Cholesky factor of a layer's C, kept: every edit solves with it.
    private func factor(_ layer: Int) throws -> DenseSolve.CholeskyFactor {
        if let cached = factors[layer] { return cached }
        let factor = try secondMoments.factor(layer: layer)
        factors[layer] = factor
        return factor
    }
}
