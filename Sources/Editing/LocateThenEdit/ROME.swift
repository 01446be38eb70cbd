import Foundation
import ModelFormats
import Models
import TensorCore

/// ROME, rank-one model editing (`kmeng01/rome`; METHODS.md §2), with the r-ROME key
/// consistency fix on by default.
///
/// For each request: the key k* (the `ffn_down` input at the subject's last token, averaged over
/// the context templates), u = C⁻¹k*/‖C⁻¹k*‖ with the layer's second moment C; the value v*
/// optimised so the model says the target; then `ΔW = r uᵀ` with `r = (v* − W k̄)/(k̄ᵀu)`.
/// Several requests are edited one after another, each on the model with the earlier ones.
/// Not for concurrent use (it caches the context templates of its model).
/// `@unchecked Sendable`: the template cache is unlocked; each owner (ModelHost's queue, one
/// evaluation thread) calls it from one thread at a time.
public final class ROME: Editor, @unchecked Sendable {
    public struct Hyperparameters: Sendable, Equatable, LocateThenEditHyperparameters {
        public var layer = 6
        /// The layer whose output the target NLL reads; the model's last layer (its logits).
        public var vLossLayer: Int
        /// 25 steps at lr 1.0 (the references: 20 at 0.5; EasyEdit's Llama: 25): on SmolLM2 the
        /// MLP output is large (‖v₀‖ ≈ 24 at layer 6) and multi-token zsRE targets needed more
        /// movement: reliability on 12 zsRE records 66% → 98% (Docs/locate-then-edit.md).
        /// Clamp 8 (the references: 4): r-ROME makes the update exact for the template-averaged
        /// key, so the bare prompt gets less than v*; more room for δ wins it back (zsRE
        /// reliability 91.7 → 95+ on the first 79 records, CounterFact ES and PS up, NS unchanged).
        public var optimization = ValueOptimizationSettings(steps: 25, learningRate: 1.0, clampNormFactor: 8.0)
        /// Use the second moment C (u = C⁻¹k*); off means C = I (EasyEdit's YAML default).
        public var mom2Adjustment = true
        /// r-ROME: the prefix-averaged key in the update as well as in u.
        public var keyConsistency = true
        /// `(length, count)` of the generated context templates.
        public var contextTemplates: [[Int]] = [[5, 10], [10, 10]]
        public var seed: UInt64 = 42

        /// The SmolLM2 defaults (METHODS.md §7, tuned as noted); for another depth the layer is 20% of it.
        public static func defaults(layerCount: Int) -> Hyperparameters {
            var h = Hyperparameters(vLossLayer: layerCount - 1)
            h.layer = layerCount == 30 ? 6 : max(0, Int((Double(layerCount) * 0.2).rounded()))
            return h
        }

        init(vLossLayer: Int) { self.vLossLayer = vLossLayer }

        public init(reading reader: inout HyperparameterReader, layerCount: Int) throws {
            self = .defaults(layerCount: layerCount)
            let layers = try reader.ints("layers", default: [layer])
            guard layers.count == 1 else {
                throw EditorError.invalidHyperparameter(file: reader.file, key: "layers", expected: "one layer for ROME")
            }
            layer = layers[0]
            try readShared(&reader, layers: [layer], layerCount: layerCount, ignoring: "context_template_length_params")
            mom2Adjustment = try reader.bool("mom2_adjustment", default: mom2Adjustment)
            keyConsistency = try reader.bool("key_consistency", "enable_random_prefix_keys", default: keyConsistency)
            try reader.finish()
        }

        public var json: JSONValue {
            .object(
                sharedJSON(
                    layers: [layer],
                    [
                        "mom2_adjustment": .bool(mom2Adjustment), "key_consistency": .bool(keyConsistency),
                        "context_templates": .array(contextTemplates.map { .array($0.map { .int($0) }) }),
                    ]))
        }
    }

    public let name: String
    public let settings: Hyperparameters
    public var hyperparameters: JSONValue { settings.json }
    /// C of the edited layer, needed when `mom2Adjustment` is on.
    private let secondMoments: SecondMomentSource?
    private var templates: [String]?

    /// - Parameter statistics: C of the edited layer, needed (and read) only when `mom2Adjustment` is on.
    public init(name: String = "rome", hyperparameters: Hyperparameters, statistics: SecondMomentSource? = nil) {
        self.name = name
        self.settings = hyperparameters
        self.secondMoments = statistics
    }

    /// The label of its statistics with `mom2Adjustment` on, `none` (C = I) off.
    public var statistics: EditorStatistics {
        guard settings.mom2Adjustment else { return .none }
        return secondMoments.map { .labelled($0.label()) } ?? .missing
    }

    public func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
        if templates == nil {
            templates = try ContextTemplates.generate(
                model, lengths: settings.contextTemplates.map { ($0[0], $0[1]) }, seed: settings.seed)
        }
        // Each request on the model with the earlier ones; the last update is not applied, so
        // one edit builds its ΔW only where its caller applies the delta.
        let updates = try model.transformer.inTurn(requests.count, source: name) { i in
            WeightDelta(entries: [try update(requests[i], model: model, templates: templates!).entry])
        }
        return WeightDelta(entries: updates.flatMap(\.entries), metadata: deltaMetadata(requests, model: model))
    }

    /// The rank-one update of one request on the model as it stands, with the key it is exact
    /// for and the value it maps that key to.
    func update(
        _ request: PreparedRequest, model: LanguageModel, templates: [String]
    ) throws
        -> (entry: WeightDelta.Entry, key: [Float], value: [Float])
    {
        let h = settings
        let config = model.config
        let id = ParameterID(layer: h.layer, .feedForwardDown)
        guard let (w, rows) = model.transformer.weights.matrix(id, config: config) else {
            throw EditorError.invalidHyperparameter(file: name, key: "layers", expected: "a layer with an MLP")
        }
        let contexts = try LocateThenEdit.inContexts(
            request, templates: templates, variants: h.optimization.promptVariants, seed: h.seed, model: model)
        // Keys at the subject's last token in every context: k* is their mean.
        let hook = HookKey(.feedForwardHidden, layer: h.layer)
        let keys = try LocateThenEdit.subjectActivations(contexts, at: [hook], model: model)[hook]!
        let f = config.feedForwardSize
        let kMean = LocateThenEdit.meanPerRequest(keys, contexts: [contexts])[0]
        var u = kMean
        if h.mom2Adjustment {
            guard let secondMoments else { throw EditorError.statisticsMissing(method: name, layers: [h.layer]) }
            u = try secondMoments.factor(layer: h.layer).solve(u.map(Double.init), count: 1).map { Float($0) }
        }
        let uNorm = Float(NormClipping.l2Norm(u, count: f))
        u = u.map { $0 / uNorm }

        let vStar = try valueOptimization.run([request], contexts: [contexts], model: model).values[0]
        // The key the update is exact for: the prefix-averaged one (r-ROME) or the bare prompt's.
        let key = h.keyConsistency ? kMean : keys[0]
        var wk = [Float](repeating: 0, count: config.hiddenSize)
        w.matrixVector(rows: rows, key, into: &wk)
        let denominator = MatMul.dot(key, u, f)
        let r = (0..<config.hiddenSize).map { (vStar[$0] - wk[$0]) / denominator }
        let left = Tensor(shape: [config.hiddenSize, 1], values: r)
        let right = Tensor(shape: [1, f], values: u)
        guard left.scalars.allSatisfy(\.isFinite), right.scalars.allSatisfy(\.isFinite) else {
            throw EditorError.notFinite(method: name, detail: "the rank-one update")
        }
        return (.init(id, .lowRank(left: left, right: right)), key, vStar)
    }

    /// v* = v₀ + δ: δ added to the MLP output at the subject's last token in every context.
    var valueOptimization: ValueOptimization {
        settings.valueOptimization(at: .feedForwardOutput, layer: settings.layer, method: name)
    }
}
