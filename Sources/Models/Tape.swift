import TensorCore

extension Transformer {
    /// A forward pass with interventions (captures, added deltas, replacements, weight deltas).
    ///
    /// - Parameters:
    ///   - sequences: new token ids of each sequence, packed in order (rows of interventions
    ///     index these new tokens).
    ///   - caches: one cache per sequence (extended in place), or nil for a stateless pass.
    ///   - interventions: applied at their hook points; see ``Intervention``.
    ///   - selection: which positions get logits.
    /// - Returns: `[R, V]` logits and the captured activations.
    /// - Throws: ``ModelError`` for an out-of-range token or a sequence past the context.
    public func forward(
        _ sequences: [[Int]], caches: [KVCache]? = nil, interventions: [Intervention],
        logits selection: LogitSelection = .all
    ) throws -> ForwardResult {
        let plan = InterventionSet(interventions, config: config, rows: sequences.joined().count, weights: weights)
        let logits = try run(sequences, caches: caches, selection: selection, interventions: plan).logits!
        return ForwardResult(logits: logits, captures: plan.captures)
    }

    /// Runs layers `0..<layers` once, for forward passes that change only later layers
    /// (the `forward` and `record` overloads that take a ``Prefix``).
    ///
    /// - Parameter interventions: applied in the prefix layers; captures are returned in
    ///   ``Prefix/captures``.
    /// - Returns: the residual stream entering layer `layers`, `[N, C]`.
    public func prefix(_ sequences: [[Int]], layers: Int, interventions: [Intervention] = []) throws -> Prefix {
        precondition(layers >= 0 && layers < config.layerCount, "prefix of \(layers) of \(config.layerCount) layers")
        let plan = InterventionSet(interventions, config: config, rows: sequences.joined().count, weights: weights)
        for key in plan.hooks.keys { precondition(key.layer < layers, "intervention at layer \(key.layer) outside the prefix") }
        for id in plan.weightDeltas.keys { precondition(id.layer < layers, "weight delta \(id) outside the prefix") }
        let residual = try run(sequences, selection: .none, interventions: plan, stopLayer: layers).residual!
        return Prefix(sequences: sequences, layer: layers, residual: residual, captures: plan.captures)
    }

    /// A prefix whose sequences continue earlier tokens: `past` runs once through every layer
    /// into KV caches, so passes from the prefix run only the new tokens. Tokens before an
    /// editor's delta row are unaffected by it, so they can be the past.
    ///
    /// - Parameters:
    ///   - sequences: the new tokens of each sequence (what passes from the prefix re-run;
    ///     rows of interventions and logit positions index these).
    ///   - past: the earlier tokens of each sequence (may be empty).
    ///   - interventions: applied to the new tokens in the prefix layers (not to the past).
    /// - Returns: the residual stream of the new tokens entering layer `layers`, `[N, C]`.
    ///
    /// The past is constant to a recorded pass: no gradient reaches it, and parameter gradients
    /// and token pairs cover only the new tokens.
    public func prefix(
        _ sequences: [[Int]], past: [[Int]], layers: Int, interventions: [Intervention] = []
    ) throws -> Prefix {
        precondition(layers >= 0 && layers < config.layerCount, "prefix of \(layers) of \(config.layerCount) layers")
        precondition(past.count == sequences.count, "one past per sequence")
        let plan = InterventionSet(interventions, config: config, rows: sequences.joined().count, weights: weights)
        for key in plan.hooks.keys { precondition(key.layer < layers, "intervention at layer \(key.layer) outside the prefix") }
        for id in plan.weightDeltas.keys { precondition(id.layer < layers, "weight delta \(id) outside the prefix") }
        // Room for the new tokens too, so passes never reallocate a shared cache.
        let caches = zip(past, sequences).map { KVCache(config: config, capacity: $0.count + $1.count) }
        if past.contains(where: { !$0.isEmpty }) {
            _ = try run(past, caches: caches, selection: .none)
        }
        let residual = try run(
            sequences, caches: caches, advanceCaches: false, selection: .none, interventions: plan,
            stopLayer: layers
        ).residual!
        return Prefix(sequences: sequences, layer: layers, residual: residual, captures: plan.captures, caches: caches)
    }

    /// A forward pass of the layers from `prefix.layer` on, starting from its cached residual:
    /// the same result as the full pass (with the prefix's interventions and these).
    public func forward(
        _ prefix: Prefix, interventions: [Intervention] = [], logits selection: LogitSelection = .all
    ) throws -> ForwardResult {
        let plan = checkedPlan(interventions, from: prefix)
        let logits = try run(
            prefix.sequences, caches: prefix.caches, advanceCaches: false, selection: selection,
            interventions: plan, firstLayer: prefix.layer, residual: prefix.residual
        ).logits!
        return ForwardResult(logits: logits, captures: plan.captures)
    }

    /// A forward pass recording what ``Tape/backward(dLogits:)`` needs, for layers from the
    /// lowest one a gradient reaches (the lowest `.add`/`.replace`/`.weightDelta` layer and
    /// requested parameter): nothing is kept or differentiated below it.
    ///
    /// - Parameters:
    ///   - sequences: token ids of each sequence (stateless), packed in order.
    ///   - interventions: see ``Intervention``; each `.add`, `.replace` and `.weightDelta`
    ///     gets its gradient.
    ///   - selection: the positions a loss reads (the output head runs only there).
    ///   - gradients: parameters and token pairs to differentiate.
    public func record(
        _ sequences: [[Int]], interventions: [Intervention] = [], logits selection: LogitSelection = .all,
        gradients request: GradientRequest = GradientRequest()
    ) throws -> Tape {
        let plan = InterventionSet(interventions, config: config, rows: sequences.joined().count, weights: weights)
        let tape = Tape(model: self, plan: plan, request: request, firstLayer: 0)
        tape.logits = try run(sequences, selection: selection, interventions: plan, tape: tape).logits!
        return tape
    }

    /// A recorded forward pass (as `record(_:interventions:logits:gradients:)` on token
    /// sequences) from a prefix's cached residual: gradients may reach down to `prefix.layer`.
    public func record(
        _ prefix: Prefix, interventions: [Intervention] = [], logits selection: LogitSelection = .all,
        gradients request: GradientRequest = GradientRequest()
    ) throws -> Tape {
        let plan = checkedPlan(interventions, from: prefix)
        let tape = Tape(model: self, plan: plan, request: request, firstLayer: prefix.layer)
        tape.logits = try run(
            prefix.sequences, caches: prefix.caches, advanceCaches: false, selection: selection,
            interventions: plan, firstLayer: prefix.layer, residual: prefix.residual,
            tape: tape
        ).logits!
        return tape
    }

    private func checkedPlan(_ interventions: [Intervention], from prefix: Prefix) -> InterventionSet {
        let plan = InterventionSet(interventions, config: config, rows: prefix.residual.shape[0], weights: weights)
        for key in plan.hooks.keys {
            precondition(key.layer >= prefix.layer, "intervention at layer \(key.layer) below the prefix (\(prefix.layer))")
        }
        for id in plan.weightDeltas.keys {
            precondition(id.layer >= prefix.layer, "weight delta \(id) below the prefix (\(prefix.layer))")
        }
        return plan
    }
}

/// A recorded forward pass: its logits and captures, and the activations of the layers a
/// backward pass goes through.
///
/// The backward is hand-written per block from the kernels of ``Backward``; norm statistics
/// and attention probabilities are recomputed from the saved inputs. A tape can be
/// differentiated several times (different losses of the same pass).
/// `@unchecked Sendable`: the recording pass fills its records unlocked and the backward passes read
/// them; one thread at a time (the optimisation's) uses a tape.
public final class Tape: @unchecked Sendable {
    /// Activations of one recorded block (see ``HookPoint`` for the names).
    final class LayerRecord {
        /// Block input, attention-norm output, q/k/v after RoPE, attention output (before
        /// `attn_output`), residual after attention, MLP input (after its interventions),
        /// `ffn_in` output before the nonlinearity, `ffn_down` input.
        let x0, h1, qkv, attention, x1, h2, preActivation, hidden: Tensor
        /// Gemma's: q and k before their per-head norms; the attention and MLP outputs before
        /// their norms.
        let queryKeyInput, attentionProjection, feedForwardProjection: Tensor?

        /// Floats per token of one record.
        static func width(_ c: TransformerConfig) -> Int {
            4 * c.hiddenSize + c.fusedQKVRows + c.queryWidth + c.feedForwardInputRows + c.feedForwardSize
                + (c.queryKeyNorm ? c.queryWidth + c.keyValueWidth : 0) + (c.outputNorms ? 2 * c.hiddenSize : 0)
        }

        /// Views of `storage` from `offset` (written in full by the forward pass before any read).
        init(_ c: TransformerConfig, rows n: Int, storage: TensorStorage, offset: Int) {
            var next = offset
            func buffer(_ width: Int) -> Tensor {
                defer { next += n * width }
                return Tensor(shape: [n, width], storage: storage, offset: next)
            }
            x0 = buffer(c.hiddenSize)
            h1 = buffer(c.hiddenSize)
            qkv = buffer(c.fusedQKVRows)
            attention = buffer(c.queryWidth)
            x1 = buffer(c.hiddenSize)
            h2 = buffer(c.hiddenSize)
            preActivation = buffer(c.feedForwardInputRows)
            hidden = buffer(c.feedForwardSize)
            queryKeyInput = c.queryKeyNorm ? buffer(c.queryWidth + c.keyValueWidth) : nil
            attentionProjection = c.outputNorms ? buffer(c.hiddenSize) : nil
            feedForwardProjection = c.outputNorms ? buffer(c.hiddenSize) : nil
        }
    }

    let model: Transformer
    let plan: InterventionSet
    let request: GradientRequest
    /// The lowest layer the backward pass reaches.
    public let lowestLayer: Int
    var sequences: [[Int]] = []
    var starts: [Int] = []
    /// The caches the new tokens continued (a prefix's), with the number of earlier tokens
    /// each held: the attention backward reads their keys and values.
    var caches: [KVCache]?
    var pastLengths: [Int] = []
    var records: [LayerRecord?] = []
    /// One buffer for every record, from (and given back to) the model's scratch pool, so
    /// an optimisation loop's tapes reuse memory instead of faulting in fresh pages.
    var arena: Tensor?
    var headRows: [Int] = []
    var headInput = Tensor(zeros: [0])

    /// `[R, V]`.
    public internal(set) var logits = Tensor(zeros: [0])
    /// The activations captured by `.capture` interventions.
    public var captures: [HookKey: Tensor] { plan.captures }

    init(model: Transformer, plan: InterventionSet, request: GradientRequest, firstLayer: Int) {
        self.model = model
        self.plan = plan
        self.request = request
        var lowest = model.config.layerCount
        for (key, indices) in plan.hooks {
            for i in indices {
                if case .capture = plan.list[i] { continue }
                lowest = min(lowest, key.layer)
            }
        }
        for id in plan.weightDeltas.keys { lowest = min(lowest, id.layer) }
        for key in request.activations { lowest = min(lowest, key.layer) }
        for id in request.parameters.union(request.tokenPairs) {
            precondition(model.weights.shape(of: id, config: model.config) != nil, "no parameter \(id)")
            precondition(!request.tokenPairs.contains(id) || !id.isNorm, "token pairs of a norm weight \(id)")
            lowest = min(lowest, id.layer)
        }
        precondition(lowest >= firstLayer, "a gradient at layer \(lowest) is below the first recorded layer \(firstLayer)")
        lowestLayer = lowest
    }

    deinit {
        if let arena { model.scratch.giveBack(arena) }
    }

    func begin(sequences: [[Int]], starts: [Int], caches: [KVCache]?) {
        self.sequences = sequences
        self.starts = starts
        self.caches = caches
        pastLengths = caches?.map(\.count) ?? Array(repeating: 0, count: sequences.count)
        let c = model.config
        records = Array(repeating: nil, count: c.layerCount)
        let n = sequences.joined().count
        let layers = c.layerCount - lowestLayer
        if layers > 0 && n > 0 { arena = model.scratch.take([layers * n * LayerRecord.width(c)]) }
    }

    /// The record of `layer` when the backward reaches it.
    func record(layer: Int) -> LayerRecord? {
        guard layer >= lowestLayer, let arena else { return nil }
        let c = model.config
        let n = sequences.joined().count
        let record = LayerRecord(
            c, rows: n, storage: arena.storage,
            offset: arena.offset + (layer - lowestLayer) * n * LayerRecord.width(c))
        records[layer] = record
        return record
    }

    func recordHead(rows: [Int], input: Tensor) {
        headRows = rows
        headInput = input
    }

    /// Whether the backward must go through the attention half of the lowest layer.
    private var needsLowestAttention: Bool {
        let l = lowestLayer
        if plan.has(.attentionOutput, l) || plan.has(.attentionInput, l) { return true }
        if request.activations.contains(where: { $0.layer == l && ($0.point == .attentionOutput || $0.point == .attentionInput) }) {
            return true
        }
        if plan.weightDeltas.keys.contains(where: { $0.layer == l && $0.isAttention }) { return true }
        return request.parameters.union(request.tokenPairs).contains { $0.layer == l && $0.isAttention }
    }

    /// Gradients of a scalar loss of the logits.
    ///
    /// - Parameter dLogits: `[R, V]`, `∂L/∂logits` (from ``Losses``).
    /// - Returns: the gradients of the interventions, requested parameters and token pairs.
    public func backward(dLogits: Tensor) -> Gradients {
        let c = model.config
        let w = c.hiddenSize
        let v = c.vocabularySize
        let n = sequences.joined().count
        let rowCount = headRows.count
        precondition(dLogits.count == rowCount * v, "dLogits \(dLogits.shape) for \(rowCount) rows of \(v)")
        var result = Gradients(
            interventions: Array(repeating: nil, count: plan.list.count), parameters: [:],
            tokenPairs: [:], activations: [:])
        let weights = model.weights

        // Output head: logits = norm(x[rows]) · Eᵀ.
        let dx = Tensor(zeros: [n, w])
        if rowCount > 0 {
            let dSelected = Tensor(zeros: [rowCount, w])
            weights.output.linearInput(dLogits.pointer, rows: rowCount, ldDY: v, into: dSelected.pointer, ldDX: w)
            normBackward(
                headInput.pointer, rows: rowCount, weight: weights.outputNorm, dY: dSelected.pointer,
                into: dSelected.pointer, accumulate: false, dWeight: nil)
            for (i, r) in headRows.enumerated() {
                Kernels.addScaled(dSelected.pointer + i * w, 1, into: dx.pointer + r * w, count: w)
            }
        }

        let f = c.feedForwardSize
        let inRows = c.feedForwardInputRows
        let fused = c.fusedQKVRows
        let qw = c.queryWidth
        let dOut = Tensor(zeros: [n, w])
        let dHidden = Tensor(zeros: [n, f])
        let dPre = Tensor(zeros: [n, inRows])
        let dH = Tensor(zeros: [n, w])
        let dAttention = Tensor(zeros: [n, qw])
        let dQKV = Tensor(zeros: [n, fused])
        for layer in stride(from: c.layerCount - 1, through: lowestLayer, by: -1) {
            let record = records[layer]!
            let block = weights.blocks[layer]
            func id(_ kind: ParameterID.Kind) -> ParameterID { ParameterID(layer: layer, kind) }

            hookBackward(.layerOutput, layer: layer, dx.pointer, rows: n, width: w, ld: w, into: &result)
            // MLP: x2 = x1 + down(act(in(norm(x1)))). dx is ∂L/∂x2, which also flows to x1.
            dOut.pointer.update(from: dx.pointer, count: n * w)
            if let norm = block.postFeedForwardNorm, let input = record.feedForwardProjection {
                normBackward(input.pointer, rows: n, weight: norm, dY: dOut.pointer, into: dOut.pointer, accumulate: false, dWeight: nil)
            }
            hookBackward(
                .feedForwardOutput, layer: layer, dOut.pointer, rows: n, width: w, ld: w,
                into: &result)
            linearGradients(
                id(.feedForwardDown), input: record.hidden.pointer, ldx: f, dY: dOut.pointer, ldDY: w,
                rows: n, into: &result)
            linearInputGradient(
                block.feedForwardDown, [.feedForwardDown], layer: layer, dY: dOut.pointer, ldDY: w,
                rows: n, into: dHidden.pointer, ldDX: f)
            hookBackward(
                .feedForwardHidden, layer: layer, dHidden.pointer, rows: n, width: f, ld: f,
                into: &result)
            let activation = model.activation
            let pre = record.preActivation.pointer
            let dh = dHidden.pointer
            let dp = dPre.pointer
            parallelFor(n) { r in activation.backward(pre: pre + r * inRows, dHidden: dh + r * f, into: dp + r * inRows) }
            for kind in c.feedForward.isGated ? [ParameterID.Kind.feedForwardGate, .feedForwardUp] : [.feedForwardUp] {
                linearGradients(
                    id(kind), input: record.h2.pointer, ldx: w, dY: dPre.pointer, ldDY: inRows, rows: n,
                    into: &result)
            }
            linearInputGradient(
                block.feedForwardInput, [.feedForwardGate, .feedForwardUp], layer: layer,
                dY: dPre.pointer, ldDY: inRows, rows: n, into: dH.pointer, ldDX: w)
            hookBackward(
                .feedForwardInput, layer: layer, dH.pointer, rows: n, width: w, ld: w,
                into: &result)
            normBackward(
                record.x1.pointer, rows: n, weight: block.feedForwardNorm, dY: dH.pointer, into: dx.pointer,
                accumulate: true, dWeight: normWeightGradient(id(.feedForwardNorm), into: &result))
            if layer == lowestLayer && !needsLowestAttention { break }

            // Attention: x1 = x0 + attn_output(attend(rope(qkv(norm(x0))))).
            dOut.pointer.update(from: dx.pointer, count: n * w)
            if let norm = block.postAttentionNorm, let input = record.attentionProjection {
                normBackward(input.pointer, rows: n, weight: norm, dY: dOut.pointer, into: dOut.pointer, accumulate: false, dWeight: nil)
            }
            hookBackward(
                .attentionOutput, layer: layer, dOut.pointer, rows: n, width: w, ld: w,
                into: &result)
            linearGradients(
                id(.attentionOutput), input: record.attention.pointer, ldx: qw, dY: dOut.pointer,
                ldDY: w, rows: n, into: &result)
            linearInputGradient(
                block.attentionOutput, [.attentionOutput], layer: layer, dY: dOut.pointer, ldDY: w,
                rows: n, into: dAttention.pointer, ldDX: qw)
            model.attention.backward(
                qkv: record.qkv, layer: layer, sequences: sequences, starts: starts, caches: caches,
                pastLengths: pastLengths, dAttention: dAttention, into: dQKV, scratch: model.scratch)
            if let queryNorm = block.queryNorm, let keyNorm = block.keyNorm, let input = record.queryKeyInput {
                model.attention.normalizeHeadsBackward(input, queryNorm: queryNorm, keyNorm: keyNorm, into: dQKV)
            }
            for kind in [ParameterID.Kind.attentionQuery, .attentionKey, .attentionValue] {
                linearGradients(
                    id(kind), input: record.h1.pointer, ldx: w, dY: dQKV.pointer, ldDY: fused, rows: n,
                    into: &result)
            }
            linearInputGradient(
                block.qkv, [.attentionQuery, .attentionKey, .attentionValue], layer: layer,
                dY: dQKV.pointer, ldDY: fused, rows: n, into: dH.pointer, ldDX: w)
            hookBackward(
                .attentionInput, layer: layer, dH.pointer, rows: n, width: w, ld: w,
                into: &result)
            normBackward(
                record.x0.pointer, rows: n, weight: block.attentionNorm, dY: dH.pointer, into: dx.pointer,
                accumulate: true, dWeight: normWeightGradient(id(.attentionNorm), into: &result))
        }
        return result
    }

    /// Backward through a hook point: keeps a requested activation gradient, then the
    /// gradients of the point's interventions (see ``InterventionSet/backward``).
    private func hookBackward(
        _ point: HookPoint, layer: Int, _ dY: UnsafeMutablePointer<Float>, rows n: Int, width: Int, ld: Int,
        into result: inout Gradients
    ) {
        let key = HookKey(point, layer: layer)
        if request.activations.contains(key) {
            let g = Tensor(zeros: [n, width])
            for r in 0..<n { (g.pointer + r * width).update(from: dY + r * ld, count: width) }
            result.activations[key] = g
        }
        plan.backward(point, layer: layer, dY, rows: n, width: width, ld: ld, into: &result.interventions)
    }

    /// `dX (+)= dY · (W + ΔW)` for a (fused) weight, `ΔW` the weight deltas of `kinds`.
    private func linearInputGradient(
        _ weight: WeightMatrix, _ kinds: [ParameterID.Kind], layer: Int, dY: UnsafePointer<Float>, ldDY: Int, rows n: Int,
        into dX: UnsafeMutablePointer<Float>, ldDX: Int
    ) {
        let k = weight.columns
        weight.linearInput(dY, rows: n, ldDY: ldDY, into: dX, ldDX: ldDX)
        for kind in kinds {
            guard let delta = plan.weightDelta(ParameterID(layer: layer, kind)) else { continue }
            Backward.linearInput(
                dY + model.config.fusedRowOffset(kind), rows: n, ldDY: ldDY, weight: delta.pointer,
                outputs: delta.shape[0], inputs: k, into: dX, ldDX: ldDX, accumulate: true)
        }
    }

    /// `∂L/∂W` (for a requested parameter or a weight delta) and token pairs of one matrix,
    /// whose outputs are the columns of `dY` from its fused row offset.
    private func linearGradients(
        _ id: ParameterID, input: UnsafePointer<Float>, ldx: Int, dY: UnsafePointer<Float>, ldDY: Int, rows n: Int,
        into result: inout Gradients
    ) {
        let deltaIndex = plan.weightDeltas[id]
        let wantsParameter = request.parameters.contains(id)
        let wantsPairs = request.tokenPairs.contains(id)
        guard wantsParameter || deltaIndex != nil || wantsPairs,
            let shape = model.weights.shape(of: id, config: model.config)
        else { return }
        let outputs = shape[0]
        let inputs = shape[1]
        let dYView = dY + model.config.fusedRowOffset(id.kind)
        if wantsParameter || deltaIndex != nil {
            let dW = Tensor(zeros: [outputs, inputs])
            Backward.linearWeight(
                dYView, rows: n, ldDY: ldDY, input: input, ldx: ldx, outputs: outputs,
                inputs: inputs, into: dW.pointer)
            if wantsParameter { result.parameters[id] = dW }
            if let deltaIndex { result.interventions[deltaIndex] = wantsParameter ? dW.copy() : dW }
        }
        if wantsPairs {
            let x = Tensor(zeros: [n, inputs])
            let g = Tensor(zeros: [n, outputs])
            for r in 0..<n {
                (x.pointer + r * inputs).update(from: input + r * ldx, count: inputs)
                (g.pointer + r * outputs).update(from: dYView + r * ldDY, count: outputs)
            }
            result.tokenPairs[id] = TokenPairs(input: x, outputGradient: g)
        }
    }

    /// A zeroed gradient buffer for a requested norm weight, stored in `result`.
    private func normWeightGradient(_ id: ParameterID, into result: inout Gradients) -> Tensor? {
        guard request.parameters.contains(id) else { return nil }
        let g = Tensor(zeros: [model.config.hiddenSize])
        result.parameters[id] = g
        return g
    }

    /// Norm backward (``Normalization/backward(_:rows:weight:dY:into:accumulate:dWeight:)``).
    private func normBackward(
        _ x: UnsafePointer<Float>, rows n: Int, weight: Tensor, dY: UnsafePointer<Float>,
        into dX: UnsafeMutablePointer<Float>, accumulate: Bool, dWeight: Tensor?
    ) {
        model.normalization.backward(x, rows: n, weight: weight, dY: dY, into: dX, accumulate: accumulate, dWeight: dWeight)
    }
}
