import Foundation
import TensorCore

/// Which positions of each sequence get logits: computing the `[*, V]` output head only
/// where a caller reads it is most of the saving in scoring and decoding.
public enum LogitSelection: Sendable {
    /// Every new token of every sequence.
    case all
    /// The last new token of each sequence.
    case last
    /// No logits (fill the cache only).
    case none
    /// For each sequence, these indices into its new tokens.
    case positions([[Int]])
}

/// A decoder-only transformer: configuration plus weights, and the forward pass.
///
/// Batches are ragged: sequences of different lengths are packed into one `[N, C]` activation
/// matrix (N = all new tokens), so every linear layer is one large matmul and no work is spent
/// on padding; attention runs per sequence.
/// `@unchecked Sendable`: `weights` and the floats behind them are edited in place, unlocked; the
/// model's owner (ModelHost's queue, one CLI thread) must not edit while another thread runs it.
public final class Transformer: @unchecked Sendable {
    public let config: TransformerConfig
    public var weights: ModelWeights
    let attention: SelfAttention
    let normalization: Normalization
    let activation: FeedForwardActivation
    /// Activation buffers reused across forward passes.
    let scratch = ScratchPool()

    /// How the weights were loaded (``WeightPrecision/native`` keeps a GGUF's blocks).
    public let precision: WeightPrecision

    public init(config: TransformerConfig, weights: ModelWeights, precision: WeightPrecision = .float32) {
        self.config = config
        self.weights = weights
        self.precision = precision
        normalization = Normalization(config)
        activation = FeedForwardActivation(config)
        attention = SelfAttention(config)
    }

    /// Runs the model on new tokens of one or more sequences.
    ///
    /// - Parameters:
    ///   - sequences: new token ids of each sequence; each continues its cache, if given.
    ///   - caches: one cache per sequence (extended in place), or nil for a stateless pass.
    ///   - logits: which positions get logits.
    /// - Returns: `[R, V]` logits, sequence by sequence in the order of `logits`.
    /// - Throws: ``ModelError`` for an out-of-range token or a sequence past the context.
    public func forward(
        _ sequences: [[Int]], caches: [KVCache]? = nil, logits selection: LogitSelection = .all
    ) throws -> Tensor {
        try run(sequences, caches: caches, selection: selection).logits!
    }

    /// The forward pass shared by every entry point: layers `firstLayer..<stopLayer` (from
    /// the embeddings, or from `residual` entering `firstLayer`), with interventions, optionally
    /// recording what a backward pass needs into `tape`. Returns the logits when `stopLayer`
    /// is the last layer, else (a copy of) the residual stream entering `stopLayer`.
    ///
    /// With `advanceCaches` false the new tokens' keys and values are written past the
    /// caches' counts but not kept: a prefix's caches stay as they are for its next pass.
    func run(
        _ sequences: [[Int]], caches: [KVCache]? = nil, advanceCaches: Bool = true, selection: LogitSelection,
        interventions plan: InterventionSet = .empty, firstLayer: Int = 0, residual: Tensor? = nil,
        stopLayer: Int? = nil, tape: Tape? = nil
    ) throws -> (logits: Tensor?, residual: Tensor?) {
        let c = config
        let stopLayer = stopLayer ?? c.layerCount
        if let caches { precondition(caches.count == sequences.count, "one cache per sequence") }
        // The layers below `firstLayer` of the new tokens are never written.
        precondition(
            firstLayer == 0 || caches == nil || !advanceCaches,
            "a pass from a cached residual cannot extend KV caches")
        let given = caches
        let caches = caches ?? sequences.map { KVCache(config: c, capacity: $0.count) }
        var starts: [Int] = []  // row offset of each sequence in the packed batch
        var total = 0
        for (s, tokens) in sequences.enumerated() {
            for t in tokens where t < 0 || t >= c.vocabularySize {
                throw ModelError.tokenOutOfRange(t, vocabularySize: c.vocabularySize)
            }
            let end = caches[s].count + tokens.count
            if end > c.contextLength {
                throw ModelError.contextExceeded(end, contextLength: c.contextLength)
            }
            caches[s].reserve(end)
            starts.append(total)
            total += tokens.count
        }
        let n = total
        let width = c.hiddenSize
        tape?.begin(sequences: sequences, starts: starts, caches: given)

        let x = scratch.take([n, width])
        if let residual {
            precondition(residual.count == n * width, "residual \(residual.shape) for \(n) rows of \(width)")
            x.pointer.update(from: residual.pointer, count: n * width)
        } else {
            // Embeddings.
            for (s, tokens) in sequences.enumerated() {
                for (t, token) in tokens.enumerated() {
                    let row = x.pointer + (starts[s] + t) * width
                    weights.tokenEmbedding.copyRow(token, into: row)
                    if c.embeddingScale != 1 { Kernels.mapSIMD(row, count: width) { $0 * c.embeddingScale } }
                    if let positions = weights.positionEmbedding {
                        Kernels.add(positions.pointer + (caches[s].count + t) * width, into: row, count: width)
                    }
                }
            }
        }

        let h = scratch.take([n, width])
        let qkv = scratch.take([n, c.fusedQKVRows])
        let attended = scratch.take([n, c.queryWidth])
        let ffn = scratch.take([n, c.feedForwardInputRows])
        let out = scratch.take([n, width])  // a block output, when a hook reads it
        let angles = attention.angleTables(rows: n, sequences: sequences, starts: starts, caches: caches, scratch: scratch)
        defer {
            scratch.giveBack(x, h, qkv, attended, ffn, out)
            attention.giveBack(angles, to: scratch)
        }
        let f = c.feedForwardSize
        for layer in firstLayer..<stopLayer {
            let block = weights.blocks[layer]
            let record = tape?.record(layer: layer)
            record?.x0.pointer.update(from: x.pointer, count: n * width)
            norm(x, block.attentionNorm, block.attentionNormBias, into: h)
            plan.apply(.attentionInput, layer: layer, h.pointer, rows: n, width: width, ld: width)
            record?.h1.pointer.update(from: h.pointer, count: n * width)
            block.qkv.linear(h.pointer, rows: n, ldx: width, bias: block.qkvBias, into: qkv.pointer, ldy: c.fusedQKVRows)
            applyWeightDeltas(
                plan, layer: layer, [.attentionQuery, .attentionKey, .attentionValue],
                input: h.pointer, ldx: width, rows: n, output: qkv.pointer, ldy: c.fusedQKVRows)
            if let queryNorm = block.queryNorm, let keyNorm = block.keyNorm {
                if let saved = record?.queryKeyInput {
                    let width = c.queryWidth + c.keyValueWidth
                    for r in 0..<n { (saved.pointer + r * width).update(from: qkv.pointer + r * c.fusedQKVRows, count: width) }
                }
                attention.normalizeHeads(qkv, rows: n, queryNorm: queryNorm, keyNorm: keyNorm)
            }
            attention.storeKeysAndValues(
                qkv, layer: layer, sequences: sequences, starts: starts, caches: caches,
                angles: angles)
            record?.qkv.pointer.update(from: qkv.pointer, count: n * c.fusedQKVRows)
            attention.attend(
                qkv, layer: layer, sequences: sequences, starts: starts, caches: caches, into: attended,
                scratch: scratch)
            record?.attention.pointer.update(from: attended.pointer, count: n * c.queryWidth)
            projectIntoResidual(
                plan, .attentionOutput, .attentionOutput, layer: layer, input: attended.pointer,
                ldx: c.queryWidth, rows: n, weight: block.attentionOutput,
                bias: block.attentionOutputBias, postNorm: block.postAttentionNorm,
                savingPreNorm: record?.attentionProjection, residual: x, scratch: out)
            record?.x1.pointer.update(from: x.pointer, count: n * width)

            norm(x, block.feedForwardNorm, block.feedForwardNormBias, into: h)
            plan.apply(.feedForwardInput, layer: layer, h.pointer, rows: n, width: width, ld: width)
            record?.h2.pointer.update(from: h.pointer, count: n * width)
            block.feedForwardInput.linear(
                h.pointer, rows: n, ldx: width, bias: block.feedForwardInputBias,
                into: ffn.pointer, ldy: c.feedForwardInputRows)
            applyWeightDeltas(
                plan, layer: layer, [.feedForwardGate, .feedForwardUp],
                input: h.pointer, ldx: width, rows: n, output: ffn.pointer, ldy: c.feedForwardInputRows)
            record?.preActivation.pointer.update(from: ffn.pointer, count: n * c.feedForwardInputRows)
            activate(ffn, rows: n)
            plan.apply(.feedForwardHidden, layer: layer, ffn.pointer, rows: n, width: f, ld: c.feedForwardInputRows)
            if let record {
                for r in 0..<n {
                    (record.hidden.pointer + r * f).update(from: ffn.pointer + r * c.feedForwardInputRows, count: f)
                }
            }
            projectIntoResidual(
                plan, .feedForwardOutput, .feedForwardDown, layer: layer, input: ffn.pointer,
                ldx: c.feedForwardInputRows, rows: n, weight: block.feedForwardDown,
                bias: block.feedForwardDownBias, postNorm: block.postFeedForwardNorm,
                savingPreNorm: record?.feedForwardProjection, residual: x, scratch: out)
            plan.apply(.layerOutput, layer: layer, x.pointer, rows: n, width: width, ld: width)
        }
        if stopLayer < c.layerCount { return (nil, x.copy()) }
        if advanceCaches {
            for (s, tokens) in sequences.enumerated() { caches[s].advance(by: tokens.count) }
        }

        // Output head, only at the selected rows.
        let rows: [Int]
        switch selection {
        case .all: rows = Array(0..<n)
        case .last: rows = sequences.indices.compactMap { s in sequences[s].isEmpty ? nil : starts[s] + sequences[s].count - 1 }
        case .none: rows = []
        case .positions(let perSequence):
            precondition(perSequence.count == sequences.count, "one position list per sequence")
            rows = perSequence.enumerated().flatMap { s, positions in
                positions.map { p in
                    precondition(p >= 0 && p < sequences[s].count, "position \(p) outside sequence \(s)")
                    return starts[s] + p
                }
            }
        }
        let selected = Tensor(zeros: [rows.count, width])
        for (i, r) in rows.enumerated() {
            (selected.pointer + i * width).update(from: x.pointer + r * width, count: width)
        }
        tape?.recordHead(rows: rows, input: selected.copy())
        norm(selected, weights.outputNorm, weights.outputNormBias, into: selected)
        let logits = Tensor(uninitialized: [rows.count, c.vocabularySize])  // written in full
        weights.output.linear(selected.pointer, rows: rows.count, ldx: width, into: logits.pointer, ldy: c.vocabularySize)
        return (logits, nil)
    }

    /// Adds `input · (W + ΔW)ᵀ + bias` (normed by `postNorm` when given, its input kept in
    /// `saved` for the backward) to the residual `x`:
    /// directly when no hook reads the block output and no norm follows, else through
    /// `scratch`, where the interventions at `point` apply.
    private func projectIntoResidual(
        _ plan: InterventionSet, _ point: HookPoint, _ kind: ParameterID.Kind, layer: Int,
        input: UnsafePointer<Float>, ldx: Int, rows n: Int, weight: WeightMatrix, bias: Tensor?, postNorm: Tensor?,
        savingPreNorm saved: Tensor?, residual x: Tensor, scratch out: Tensor
    ) {
        let width = config.hiddenSize
        if plan.has(point, layer) || postNorm != nil {
            weight.linear(input, rows: n, ldx: ldx, bias: bias, into: out.pointer, ldy: width)
            applyWeightDeltas(plan, layer: layer, [kind], input: input, ldx: ldx, rows: n, output: out.pointer, ldy: width)
            // The hooks see the matrix's output, what a weight edit changes; the norm follows.
            plan.apply(point, layer: layer, out.pointer, rows: n, width: width, ld: width)
            if let postNorm {
                saved?.pointer.update(from: out.pointer, count: n * width)
                normalization.forward(out.pointer, rows: n, weight: postNorm, bias: nil, into: out.pointer)
            }
            Kernels.addScaled(out.pointer, 1, into: x.pointer, count: n * width)
        } else {
            weight.linear(input, rows: n, ldx: ldx, bias: bias, into: x.pointer, ldy: width, accumulate: true)
            applyWeightDeltas(plan, layer: layer, [kind], input: input, ldx: ldx, rows: n, output: x.pointer, ldy: width)
        }
    }

    /// Adds `input · ΔWᵀ` to the output columns of each of `kinds` that has a weight delta.
    private func applyWeightDeltas(
        _ plan: InterventionSet, layer: Int, _ kinds: [ParameterID.Kind],
        input: UnsafePointer<Float>, ldx: Int, rows n: Int, output: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        guard !plan.weightDeltas.isEmpty else { return }
        for kind in kinds {
            guard let delta = plan.weightDelta(ParameterID(layer: layer, kind)) else { continue }
            MatMul.linear(
                input, rows: n, ldx: ldx, weight: delta, into: output + config.fusedRowOffset(kind),
                ldy: ldy, accumulate: true)
        }
    }

    /// The norm of every row of `x` into `y` (which may be `x`).
    func norm(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, into y: Tensor) {
        normalization.forward(x.pointer, rows: x.shape[0], weight: weight, bias: bias, into: y.pointer)
    }

    /// The feed-forward nonlinearity of every row, in place (``FeedForwardActivation``).
    func activate(_ ffn: Tensor, rows: Int) {
        let activation = activation
        let ld = config.feedForwardInputRows
        let p = ffn.pointer
        let chunk = 8
        parallelFor((rows + chunk - 1) / chunk) { i in
            for r in (i * chunk)..<min(rows, (i + 1) * chunk) { activation.forward(p + r * ld) }
        }
    }
}

/// Errors of running a model on given inputs.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case tokenOutOfRange(Int, vocabularySize: Int)
    case contextExceeded(Int, contextLength: Int)

    public var description: String {
        switch self {
        case .tokenOutOfRange(let t, let v):
            "token id \(t) is outside the vocabulary (0..<\(v))"
        case .contextExceeded(let n, let limit):
            "sequence of \(n) tokens exceeds the model's context length of \(limit)"
        }
    }
}
