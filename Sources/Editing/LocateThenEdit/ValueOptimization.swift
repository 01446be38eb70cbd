import Models
import TensorCore

/// A rule that steps δ from each read of ``ValueOptimization``'s loss, in place of Adam.
protocol ValueStepper: AnyObject {
    /// Read `step` of request `request`: the loss at δ and ∂loss/∂δ (weight decay included);
    /// the stepper may update `delta` in place. `initial` is v₀.
    func read(request: Int, step: Int, loss: Float, gradient: [Float], delta: Tensor, initial: [Float]) throws
}

/// How ``ValueOptimization`` optimises δ (the references' `v_*`, `clamp_norm_factor` and
/// `kl_factor` keys).
public struct ValueOptimizationSettings: Sendable, Equatable {
    public var steps: Int
    public var learningRate: Double
    public var weightDecay = 0.5
    public var clampNormFactor: Double
    public var klFactor = 0.0625
    /// Adam stops once a request's loss is below this (`v_loss_threshold`; the references'
    /// constant 5e-2, a mean target probability of about 0.95 per token).
    public var lossThreshold = 5e-2
    /// The weight of the target's first token in the NLL, the others 1, normalised to a
    /// weighted mean (`v_first_token_weight`; 1 is the references' token mean). The first token
    /// is where a paraphrase fails; the later ones are teacher-forced continuations.
    public var firstTokenWeight = 1.0
    /// Rewordings of the prompt (one word left out each, ``EditRequest/wordDropoutVariants(_:seed:)``)
    /// added to its contexts, for the value's loss and the keys' mean (`prompt_variants`; 0, as
    /// the references).
    public var promptVariants = 0
    /// Adam stops on the worst context's NLL instead of the mean over contexts
    /// (`v_stop_every_context`; false, as the references), so a rewording the mean hides is fitted too.
    public var stopOnEveryContext = false

    /// Reads the keys of a hyperparameter file that set the optimisation, all but the step count.
    mutating func read(_ reader: inout HyperparameterReader) throws {
        learningRate = try reader.double("v_lr", default: learningRate)
        weightDecay = try reader.double("v_weight_decay", default: weightDecay)
        clampNormFactor = try reader.double("clamp_norm_factor", default: clampNormFactor)
        klFactor = try reader.double("kl_factor", default: klFactor)
        lossThreshold = try reader.double("v_loss_threshold", default: lossThreshold)
        firstTokenWeight = try reader.double("v_first_token_weight", default: firstTokenWeight)
        promptVariants = try reader.int("prompt_variants", default: promptVariants, in: 0...16)
        stopOnEveryContext = try reader.bool("v_stop_every_context", default: stopOnEveryContext)
        guard firstTokenWeight > 0 else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "v_first_token_weight", expected: "a positive number")
        }
    }
}

/// The activation each request's edited layer should produce at the subject's last token
/// (ROME's v*, MEMIT's z; METHODS.md §2.3 and §3 step 1): the activation at ``point`` of
/// ``layer`` plus a δ optimised so the model predicts the target in every context.
///
/// Loss per request: the target NLL averaged over contexts and target tokens, plus
/// `klFactor · KL(edited ‖ original)` of the next token after `"{subject} is a"`, plus
/// `weightDecay · ‖δ‖ / ‖v₀‖²`; Adam on δ, its norm clamped to `clampNormFactor · ‖v₀‖`,
/// stopping at a loss below `lossThreshold`. All requests are optimised together (one batched pass per
/// step, one δ each), which gives each the same δ as optimising it alone.
///
/// Positions before a sequence's δ row do not depend on δ: they run once into KV caches and
/// every step re-runs only the tokens from the subject's last one on.
struct ValueOptimization {
    var point: HookPoint
    var layer: Int
    var settings: ValueOptimizationSettings
    /// The editor's name, for errors.
    var method: String
    /// Replaces Adam: a rule that sees every read, including the last (IBKE's learned value
    /// steps). With a stepper every request takes all `settings.steps` reads: no early stop.
    var stepper: ValueStepper?
    /// With a stepper: the reads it steps from, after which Adam continues from its δ and stops
    /// at the settings' loss threshold (the learned steps as a warm start). Nil: the stepper takes them all.
    var stepperReads: Int?

    struct Result {
        /// v₀ + δ per request, `[width]`.
        var values: [[Float]]
        /// v₀ per request: the unedited activation on the bare prompt.
        var initial: [[Float]]
        /// Optimisation steps each request took, and its last loss.
        var stepsTaken: [Int]
        var losses: [Float]
        /// ∂loss/∂δ at δ = 0 per request (the first step's gradient, before Adam).
        var initialGradients: [[Float]]
    }

    /// One request's sequences: its prompt in every context, then `"{subject} is a"`.
    struct Layout {
        var past: [[Int]] = []
        var new: [[Int]] = []
        /// Per sequence, the new-token positions whose logits the loss reads.
        var positions: [[Int]] = []
        /// Per sequence, the new-token position of the subject's last token (where δ is added).
        var deltaPositions: [Int] = []
        var targets: [Int] = []
        var weights: [Float] = []
        var contexts = 0

        /// The largest of the contexts' target NLLs (each its weighted token mean), from the
        /// logits of the loss's rows, context after context.
        func worstContextNLL(logits: UnsafePointer<Float>, vocabularySize v: Int) -> Float {
            let perContext = targets.count / contexts
            return targets.withUnsafeBufferPointer { t in
                weights.withUnsafeBufferPointer { w in
                    (0..<contexts).map { c in
                        Float(contexts)
                            * Losses.crossEntropy(
                                logits: logits + c * perContext * v, rows: perContext, vocabularySize: v, ldLogits: v,
                                targets: t.baseAddress! + c * perContext, weights: w.baseAddress! + c * perContext, dLogits: nil,
                                ldDLogits: v)
                    }.max()!
                }
            }
        }
    }

    /// - Parameter contexts: each request in every context template (`"{}"` first: its δ
    ///   row's activation is v₀).
    func run(_ requests: [PreparedRequest], contexts: [[PreparedRequest]], model: LanguageModel) throws -> Result {
        let config = model.config
        let width = point.width(config)
        let v = config.vocabularySize
        let h = settings
        let layouts = try zip(requests, contexts).map { request, contexts in
            try layout(request, contexts: contexts, model: model)
        }
        var sequenceRanges: [Range<Int>] = []
        var all = Layout()
        for layout in layouts {
            sequenceRanges.append(all.new.count..<(all.new.count + layout.new.count))
            all.past += layout.past
            all.new += layout.new
        }
        let full = try model.transformer.prefix(all.new, past: all.past, layers: layer)

        let deltas = requests.map { _ in Tensor(zeros: [width]) }
        let optimizers = deltas.map { Adam(parameters: [$0], learningRate: h.learningRate) }
        var initial = [[Float]?](repeating: nil, count: requests.count)
        var klReference = [[Float]?](repeating: nil, count: requests.count)
        var stepsTaken = [Int](repeating: 0, count: requests.count)
        var losses = [Float](repeating: .infinity, count: requests.count)
        var initialGradients = [[Float]](repeating: [], count: requests.count)
        var active = Array(requests.indices)
        var prefix = full
        for step in 0..<h.steps where !active.isEmpty {
            let stepping = stepper != nil && step < (stepperReads ?? h.steps)
            // The active requests' sequences, packed in order.
            var interventions: [Intervention] = [.capture(point, layer: layer)]
            var positions: [[Int]] = []
            var firstRows: [Int] = []
            var rowStart = 0
            for i in active {
                let layout = layouts[i]
                var rows: [Int] = []
                for (s, context) in layout.new.enumerated() {
                    rows.append(rowStart + layout.deltaPositions[s])
                    rowStart += context.count
                }
                firstRows.append(rows[0])
                interventions.append(.add(point, layer: layer, delta: deltas[i], rows: rows))
                positions += layout.positions
            }
            let tape = try model.transformer.record(prefix, interventions: interventions, logits: .positions(positions))
            let captured = tape.captures[HookKey(point, layer: layer)]!
            let dLogits = Tensor(zeros: [tape.logits.shape[0], v])
            var logitRow = 0
            var finished: [Int] = []
            for (a, i) in active.enumerated() {
                let layout = layouts[i]
                if initial[i] == nil {
                    initial[i] = Array(UnsafeBufferPointer(start: captured.pointer + firstRows[a] * width, count: width))
                }
                let rows = layout.targets.count
                let logits = tape.logits.pointer + logitRow * v
                let dRequest = dLogits.pointer + logitRow * v
                let klRow = logits + rows * v
                if klReference[i] == nil { klReference[i] = Array(UnsafeBufferPointer(start: klRow, count: v)) }
                let nll = layout.targets.withUnsafeBufferPointer { t in
                    layout.weights.withUnsafeBufferPointer { w in
                        Losses.crossEntropy(
                            logits: logits, rows: rows, vocabularySize: v, ldLogits: v,
                            targets: t.baseAddress!, weights: w.baseAddress!, dLogits: dRequest, ldDLogits: v)
                    }
                }
                var klWeight = Float(h.klFactor)
                let kl = klReference[i]!.withUnsafeBufferPointer { reference in
                    Losses.klDivergence(
                        reference: reference.baseAddress!, ldReference: v, edited: klRow, ldEdited: v,
                        rows: 1, vocabularySize: v, weights: &klWeight, dEdited: dRequest + rows * v,
                        ldDEdited: v)
                }
                let v0 = Float(NormClipping.l2Norm(initial[i]!, count: width))
                let deltaNorm = Float(NormClipping.l2Norm(deltas[i]))
                let penalties = kl + Float(h.weightDecay) * deltaNorm / (v0 * v0)
                let loss = nll + penalties
                guard loss.isFinite else { throw EditorError.notFinite(method: method, detail: "the value loss of request \(i)") }
                losses[i] = loss
                stepsTaken[i] = step
                let stopLoss = h.stopOnEveryContext ? layout.worstContextNLL(logits: logits, vocabularySize: v) + penalties : loss
                if (!stepping && stopLoss < Float(h.lossThreshold)) || step == h.steps - 1 {
                    finished.append(i)
                    if !stepping { dRequest.update(repeating: 0, count: (rows + 1) * v) }
                }
                logitRow += rows + 1
            }
            if stepping || finished.count < active.count {
                let gradients = tape.backward(dLogits: dLogits)
                for (a, i) in active.enumerated() where stepping || !finished.contains(i) {
                    let g = gradients.interventions[a + 1]!
                    if step == 0 { initialGradients[i] = g.scalars }
                    let v0 = Float(NormClipping.l2Norm(initial[i]!, count: width))
                    let deltaNorm = Float(NormClipping.l2Norm(deltas[i]))
                    if deltaNorm > 0 {
                        Kernels.addScaled(deltas[i].pointer, Float(h.weightDecay) / (deltaNorm * v0 * v0), into: g.pointer, count: width)
                    }
                    if stepping, let stepper {
                        try stepper.read(
                            request: i, step: step, loss: losses[i], gradient: g.scalars, delta: deltas[i], initial: initial[i]!)
                    } else {
                        optimizers[i].step(gradients: [g])
                        NormClipping.clampNorm(deltas[i], maxNorm: Float(h.clampNormFactor) * v0)
                    }
                }
            }
            if !finished.isEmpty {
                active.removeAll { finished.contains($0) }
                if !active.isEmpty { prefix = full.selecting(active.flatMap { Array(sequenceRanges[$0]) }) }
            }
        }
        let values = requests.indices.map { i in zip(initial[i]!, deltas[i].scalars).map { $0 + $1 } }
        return Result(
            values: values, initial: initial.map { $0! }, stepsTaken: stepsTaken, losses: losses, initialGradients: initialGradients)
    }

    /// A request's sequences split at their δ rows, with the loss's positions and targets.
    private func layout(_ request: PreparedRequest, contexts: [PreparedRequest], model: LanguageModel) throws -> Layout {
        let target = request.target
        let kl = try EditRequest(prompt: "{} is a", subject: request.request.subject, targetNew: "x").prepared(for: model)
        var layout = Layout()
        layout.contexts = contexts.count
        for context in contexts {
            let sequence = context.prompt + target.dropLast()
            let split = context.subjectLast
            layout.past.append(Array(sequence[..<split]))
            layout.new.append(Array(sequence[split...]))
            layout.deltaPositions.append(context.subjectLast - split)
            let first = context.prompt.count - 1 - split
            layout.positions.append(Array(first..<(first + target.count)))
            layout.targets += target
        }
        let klSplit = kl.subjectLast
        layout.past.append(Array(kl.prompt[..<klSplit]))
        layout.new.append(Array(kl.prompt[klSplit...]))
        layout.deltaPositions.append(kl.subjectLast - klSplit)
        layout.positions.append([kl.subjectLast - klSplit])
        let firstWeight = Float(settings.firstTokenWeight)
        let perContext = [firstWeight] + [Float](repeating: 1, count: max(0, target.count - 1))
        let total = Float(contexts.count) * perContext.reduce(0, +)
        layout.weights = Array([[Float]](repeating: perContext.map { $0 / total }, count: contexts.count).joined())
        return layout
    }
}

extension LocateThenEdit {
    /// Activations at the subject's last token of each prompt, at each hook, from one pass that
    /// stops after the highest layer read: `[hook: [prompt][width]]`.
    static func subjectActivations(
        _ prompts: [PreparedRequest], at hooks: [HookKey], model: LanguageModel
    ) throws
        -> [HookKey: [[Float]]]
    {
        let sequences = prompts.map(\.prompt)
        let rows = Transformer.packedRows(sequences, positions: prompts.map { [$0.subjectLast] })
        let interventions = hooks.map { Intervention.capture($0.point, layer: $0.layer) }
        let top = hooks.map(\.layer).max()! + 1
        let captures =
            top < model.config.layerCount
            ? try model.transformer.prefix(sequences, layers: top, interventions: interventions).captures
            : try model.transformer.forward(sequences, interventions: interventions, logits: .none).captures
        var result: [HookKey: [[Float]]] = [:]
        for hook in hooks {
            let captured = captures[hook]!
            let width = hook.point.width(model.config)
            result[hook] = rows.map { Array(UnsafeBufferPointer(start: captured.pointer + $0 * width, count: width)) }
        }
        return result
    }

    /// The mean of each request's rows (keys: its k̄) (its prompt in every context), rows in request order.
    static func meanPerRequest(_ rows: [[Float]], contexts: [[PreparedRequest]]) -> [[Float]] {
        var means: [[Float]] = []
        var row = 0
        for group in contexts {
            var mean = [Float](repeating: 0, count: rows[row].count)
            for r in row..<(row + group.count) {
                for j in mean.indices { mean[j] += rows[r][j] / Float(group.count) }
            }
            means.append(mean)
            row += group.count
        }
        return means
    }

    /// Each request in every template, the subject still marked, then its `variants` rewordings
    /// (``EditRequest/wordDropoutVariants(_:seed:)``) bare. The first is the bare prompt.
    static func inContexts(
        _ request: PreparedRequest, templates: [String], variants: Int = 0, seed: UInt64 = 0, model: LanguageModel
    ) throws -> [PreparedRequest] {
        let placed = try templates.map { t in
            guard let r = request.request.inContext(t) else {
                throw EditRequestError.subjectNotInPrompt(subject: request.request.subject, prompt: request.request.prompt, request: 0)
            }
            return r
        }
        return try (placed + request.request.wordDropoutVariants(variants, seed: seed)).map { try $0.prepared(for: model) }
    }
}

/// Shared pieces of ROME, MEMIT and AlphaEdit.
enum LocateThenEdit {}
