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
    public struct Hyperparameters: Sendable, Equatable {
        public var layer = 6
        /// The layer whose output the target NLL reads; the model's last layer (its logits).
        public var vLossLayer: Int
        /// 25 steps at lr 1.0 (the references: 20 at 0.5; EasyEdit's Llama: 25): on SmolLM2 the
        /// MLP output is large (‖v₀‖ ≈ 24 at layer 6) and multi-token zsRE targets needed more
        /// movement: reliability on 12 zsRE records 66% → 98% (Docs/locate-then-edit.md).
        public var steps = 25
        public var learningRate = 1.0
        public var weightDecay = 0.5
        /// 8 (the references: 4): r-ROME makes the update exact for the template-averaged key,
        /// so the bare prompt gets less than v*; more room for δ wins it back (zsRE reliability
        /// 91.7 → 95+ on the first 79 records, CounterFact ES and PS up, NS unchanged).
        public var clampNormFactor = 8.0
        public var klFactor = 0.0625
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
            vLossLayer = try reader.int("v_loss_layer", default: vLossLayer)
            try reader.checkLayers([layer, vLossLayer], layerCount: layerCount)
            guard vLossLayer == layerCount - 1 else {
                throw EditorError.invalidHyperparameter(file: reader.file, key: "v_loss_layer",
                                                        expected: "\(layerCount - 1), the last layer (the logits)")
            }
            steps = try reader.int("v_num_grad_steps", default: steps, in: 1...1000)
            learningRate = try reader.double("v_lr", default: learningRate)
            weightDecay = try reader.double("v_weight_decay", default: weightDecay)
            clampNormFactor = try reader.double("clamp_norm_factor", default: clampNormFactor)
            klFactor = try reader.double("kl_factor", default: klFactor)
            mom2Adjustment = try reader.bool("mom2_adjustment", default: mom2Adjustment)
            keyConsistency = try reader.bool("key_consistency", "enable_random_prefix_keys", default: keyConsistency)
            seed = UInt64(try reader.int("seed", default: Int(seed)))
            let factToken = try reader.string("fact_token", default: "subject_last")
            guard factToken == "subject_last" else {
                throw EditorError.invalidHyperparameter(file: reader.file, key: "fact_token", expected: "subject_last (the only strategy implemented)")
            }
            reader.ignore("alg_name", "model_name", "device", "rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp",
                          "attn_module_tmp", "ln_f_module", "lm_head_module", "mom2_dataset", "mom2_n_samples",
                          "mom2_dtype", "context_template_length_params", "model_parallel", "fp16", "stats_dir")
            try reader.finish()
        }

        public var json: JSONValue {
            .object([
                "layers": .array([.int(layer)]), "v_loss_layer": .int(vLossLayer), "v_num_grad_steps": .int(steps),
                "v_lr": .double(learningRate), "v_weight_decay": .double(weightDecay),
                "clamp_norm_factor": .double(clampNormFactor), "kl_factor": .double(klFactor),
                "mom2_adjustment": .bool(mom2Adjustment), "key_consistency": .bool(keyConsistency),
                "context_templates": .array(contextTemplates.map { .array($0.map { .int($0) }) }),
                "fact_token": .string("subject_last"), "seed": .int(Int(seed)),
            ])
        }
    }

    public let name: String
    public let settings: Hyperparameters
    public var hyperparameters: JSONValue { settings.json }
    /// The second moment E[kkᵀ] of a layer's `ffn_down` input, `[F, F]` (needed when
    /// `mom2Adjustment` is on).
    private let secondMoment: (@Sendable (Int) throws -> Tensor)?
    private let statisticsLabel: @Sendable () -> String
    private var templates: [String]?

    /// - Parameters:
    ///   - secondMoment: C of a layer, needed when `mom2Adjustment` is on.
    ///   - statisticsLabel: where `secondMoment`'s matrices come from (``statistics``).
    public init(name: String = "rome", hyperparameters: Hyperparameters, secondMoment: (@Sendable (Int) throws -> Tensor)? = nil,
                statisticsLabel: @escaping @Sendable () -> String = { "caller-supplied second moments" }) {
        self.name = name
        self.settings = hyperparameters
        self.secondMoment = secondMoment
        self.statisticsLabel = statisticsLabel
    }

    /// ROME with C from `statistics` (when `mom2Adjustment` is on; ignored otherwise).
    public convenience init(name: String = "rome", hyperparameters: Hyperparameters, statistics: SecondMoments) {
        self.init(name: name, hyperparameters: hyperparameters, secondMoment: { try statistics.matrix(layer: $0) },
                  statisticsLabel: { statistics.label })
    }

    /// ``SecondMoments/label`` of its statistics with `mom2Adjustment` on, `none` (C = I) off.
    public var statistics: EditorStatistics {
        guard settings.mom2Adjustment else { return .none }
        return secondMoment == nil ? .missing : .labelled(statisticsLabel())
    }

    public func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
        if templates == nil {
            templates = try ContextTemplates.generate(
                model, lengths: settings.contextTemplates.map { ($0[0], $0[1]) }, seed: settings.seed)
        }
        var delta = WeightDelta(metadata: deltaMetadata(requests, model: model))
        var applied: [AppliedDelta] = []
        defer { for a in applied.reversed() { a.revert() } }
        for request in requests {
            let entry = try update(request, model: model, templates: templates!).entry
            let one = WeightDelta(entries: [entry])
            applied.append(try model.transformer.apply(one, source: name))
            delta.entries.append(entry)
        }
        return delta
    }

    /// The rank-one update of one request on the model as it stands, with the key it is exact
    /// for and the value it maps that key to.
    func update(_ request: PreparedRequest, model: LanguageModel, templates: [String]) throws
        -> (entry: WeightDelta.Entry, key: [Float], value: [Float])
    {
        let h = settings, config = model.config
        let id = ParameterID(layer: h.layer, .feedForwardDown)
        guard let (w, rows) = model.transformer.weights.matrix(id, config: config) else {
            throw EditorError.invalidHyperparameter(file: name, key: "layers", expected: "a layer with an MLP")
        }
        let contexts = try LocateThenEdit.inContexts(request, templates: templates, model: model)
        // Keys at the subject's last token in every context: k* is their mean.
        let hook = HookKey(.feedForwardHidden, layer: h.layer)
        let keys = try LocateThenEdit.subjectActivations(contexts, at: [hook], model: model)[hook]!
        let f = config.feedForwardSize
        var kMean = [Float](repeating: 0, count: f)
        for key in keys { for i in 0..<f { kMean[i] += key[i] / Float(keys.count) } }
        var u = kMean
        if h.mom2Adjustment {
            guard let secondMoment else { throw EditorError.statisticsMissing(method: name, layers: [h.layer]) }
            u = try Self.solve(secondMoment(h.layer), u)
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
        let left = Tensor(shape: [config.hiddenSize, 1], values: r), right = Tensor(shape: [1, f], values: u)
        guard left.scalars.allSatisfy(\.isFinite), right.scalars.allSatisfy(\.isFinite) else {
            throw EditorError.notFinite(method: name, detail: "the rank-one update")
        }
        return (.init(id, .lowRank(left: left, right: right)), key, vStar)
    }

    /// v* = v₀ + δ: δ added to the MLP output at the subject's last token in every context.
    var valueOptimization: ValueOptimization {
        let h = settings
        return ValueOptimization(point: .feedForwardOutput, layer: h.layer, steps: h.steps, learningRate: h.learningRate,
                                 weightDecay: h.weightDecay, clampNormFactor: h.clampNormFactor, klFactor: h.klFactor,
                                 method: name)
    }

    /// x = (C + ridge·I)⁻¹ b by Cholesky (a small ridge, 1e-6·tr(C)/F, keeps a small-sample C
    /// positive definite).
    static func solve(_ c: Tensor, _ b: [Float]) throws -> [Float] {
        let n = b.count
        precondition(c.shape == [n, n], "second moment \(c.shape) for a key of \(n)")
        var trace: Float = 0
        for i in 0..<n { trace += c.pointer[i * n + i] }
        return try Cholesky.solve(c, Tensor(shape: [1, n], values: b), ridge: 1e-6 * trace / Float(n)).scalars
    }
}

