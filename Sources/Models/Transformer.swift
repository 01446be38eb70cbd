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
public final class Transformer: @unchecked Sendable {
    public let config: TransformerConfig
    public var weights: ModelWeights
    let rotary: RotaryEmbedding?
    /// RoPE of the sliding-window blocks, when they have their own.
    let localRotary: RotaryEmbedding?
    let normalization: Normalization
    let activation: FeedForwardActivation
    /// Activation buffers reused across forward passes.
    let scratch = ScratchPool()

    public init(config: TransformerConfig, weights: ModelWeights) {
        self.config = config
        self.weights = weights
        normalization = Normalization(config)
        activation = FeedForwardActivation(config)
        if case .rotary(_, let frequencies) = config.positions {
            rotary = RotaryEmbedding(inverseFrequencies: frequencies, headDim: config.headDim)
        } else {
            rotary = nil
        }
        localRotary = config.slidingWindow.map { RotaryEmbedding(inverseFrequencies: $0.inverseFrequencies, headDim: config.headDim) }
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
        precondition(firstLayer == 0 || caches == nil || !advanceCaches,
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
        let n = total, width = c.hiddenSize
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
                    row.update(from: weights.tokenEmbedding.pointer + token * width, count: width)
                    if c.embeddingScale != 1 { Kernels.mapSIMD(row, count: width) { $0 * c.embeddingScale } }
                    if let positions = weights.positionEmbedding {
                        Kernels.add(positions.pointer + (caches[s].count + t) * width, into: row, count: width)
                    }
                }
            }
        }

        let h = scratch.take([n, width])
        let qkv = scratch.take([n, c.fusedQKVRows])
        let attention = scratch.take([n, c.queryWidth])
        let ffn = scratch.take([n, c.feedForwardInputRows])
        let out = scratch.take([n, width])  // a block output, when a hook reads it
        let angles = rotaryAngles(rotary, rows: n, sequences: sequences, starts: starts, caches: caches)
        let localAngles = rotaryAngles(localRotary, rows: n, sequences: sequences, starts: starts, caches: caches)
        defer {
            scratch.giveBack(x, h, qkv, attention, ffn, out)
            if let angles { scratch.giveBack(angles) }
            if let localAngles { scratch.giveBack(localAngles) }
        }
        let f = c.feedForwardSize
        for layer in firstLayer..<stopLayer {
            let block = weights.blocks[layer]
            let record = tape?.record(layer: layer)
            record?.x0.pointer.update(from: x.pointer, count: n * width)
            norm(x, block.attentionNorm, block.attentionNormBias, into: h)
            plan.apply(.attentionInput, layer: layer, h.pointer, rows: n, width: width, ld: width)
            record?.h1.pointer.update(from: h.pointer, count: n * width)
            MatMul.linear(h.pointer, rows: n, ldx: width, weight: block.qkv, bias: block.qkvBias,
                          into: qkv.pointer, ldy: c.fusedQKVRows)
            applyWeightDeltas(plan, layer: layer, [.attentionQuery, .attentionKey, .attentionValue],
                              input: h.pointer, ldx: width, rows: n, output: qkv.pointer, ldy: c.fusedQKVRows)
            if let queryNorm = block.queryNorm, let keyNorm = block.keyNorm {
                if let saved = record?.queryKeyInput {
                    let width = c.queryWidth + c.keyValueWidth
                    for r in 0..<n { (saved.pointer + r * width).update(from: qkv.pointer + r * c.fusedQKVRows, count: width) }
                }
                normalizeHeads(qkv, rows: n, queryNorm, keyNorm)
            }
            let local = c.window(layer: layer) != nil && localRotary != nil
            storeKeysAndValues(qkv, layer: layer, sequences: sequences, starts: starts, caches: caches,
                               rotary: local ? localRotary : rotary, angles: local ? localAngles : angles)
            record?.qkv.pointer.update(from: qkv.pointer, count: n * c.fusedQKVRows)
            attend(qkv, layer: layer, sequences: sequences, starts: starts, caches: caches, into: attention)
            record?.attention.pointer.update(from: attention.pointer, count: n * c.queryWidth)
            projectIntoResidual(plan, .attentionOutput, .attentionOutput, layer: layer, input: attention.pointer,
                                ldx: c.queryWidth, rows: n, weight: block.attentionOutput,
                                bias: block.attentionOutputBias, postNorm: block.postAttentionNorm,
                                savingPreNorm: record?.attentionProjection, residual: x, scratch: out)
            record?.x1.pointer.update(from: x.pointer, count: n * width)

            norm(x, block.feedForwardNorm, block.feedForwardNormBias, into: h)
            plan.apply(.feedForwardInput, layer: layer, h.pointer, rows: n, width: width, ld: width)
            record?.h2.pointer.update(from: h.pointer, count: n * width)
            MatMul.linear(h.pointer, rows: n, ldx: width, weight: block.feedForwardInput,
                          bias: block.feedForwardInputBias, into: ffn.pointer, ldy: c.feedForwardInputRows)
            applyWeightDeltas(plan, layer: layer, [.feedForwardGate, .feedForwardUp],
                              input: h.pointer, ldx: width, rows: n, output: ffn.pointer, ldy: c.feedForwardInputRows)
            record?.preActivation.pointer.update(from: ffn.pointer, count: n * c.feedForwardInputRows)
            activate(ffn, rows: n)
            plan.apply(.feedForwardHidden, layer: layer, ffn.pointer, rows: n, width: f, ld: c.feedForwardInputRows)
            if let record {
                for r in 0..<n {
                    (record.hidden.pointer + r * f).update(from: ffn.pointer + r * c.feedForwardInputRows, count: f)
                }
            }
            projectIntoResidual(plan, .feedForwardOutput, .feedForwardDown, layer: layer, input: ffn.pointer,
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
        MatMul.linear(selected.pointer, rows: rows.count, ldx: width, weight: weights.output,
                      into: logits.pointer, ldy: c.vocabularySize)
        return (logits, nil)
    }

    /// Adds `input · (W + ΔW)ᵀ + bias` (normed by `postNorm` when given, its input kept in
    /// `saved` for the backward) to the residual `x`:
    /// directly when no hook reads the block output and no norm follows, else through
    /// `scratch`, where the interventions at `point` apply.
    private func projectIntoResidual(
        _ plan: InterventionSet, _ point: HookPoint, _ kind: ParameterID.Kind, layer: Int,
        input: UnsafePointer<Float>, ldx: Int, rows n: Int, weight: Tensor, bias: Tensor?, postNorm: Tensor?,
        savingPreNorm saved: Tensor?, residual x: Tensor, scratch out: Tensor
    ) {
        let width = config.hiddenSize
        if plan.has(point, layer) || postNorm != nil {
            MatMul.linear(input, rows: n, ldx: ldx, weight: weight, bias: bias, into: out.pointer, ldy: width)
            applyWeightDeltas(plan, layer: layer, [kind], input: input, ldx: ldx, rows: n, output: out.pointer, ldy: width)
            // The hooks see the matrix's output, what a weight edit changes; the norm follows.
            plan.apply(point, layer: layer, out.pointer, rows: n, width: width, ld: width)
            if let postNorm {
                saved?.pointer.update(from: out.pointer, count: n * width)
                normalization.forward(out.pointer, rows: n, weight: postNorm, bias: nil, into: out.pointer)
            }
            Kernels.addScaled(out.pointer, 1, into: x.pointer, count: n * width)
        } else {
            MatMul.linear(input, rows: n, ldx: ldx, weight: weight, bias: bias, into: x.pointer, ldy: width,
                          accumulate: true)
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
            MatMul.linear(input, rows: n, ldx: ldx, weight: delta, into: output + config.fusedRowOffset(kind),
                          ldy: ldy, accumulate: true)
        }
    }

    /// The norm of every row of `x` into `y` (which may be `x`).
    func norm(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, into y: Tensor) {
        normalization.forward(x.pointer, rows: x.shape[0], weight: weight, bias: bias, into: y.pointer)
    }

    /// The feed-forward nonlinearity of every row, in place (``FeedForwardActivation``).
    func activate(_ ffn: Tensor, rows: Int) {
        let activation = activation, ld = config.feedForwardInputRows, p = ffn.pointer
        let chunk = 8
        parallelFor((rows + chunk - 1) / chunk) { i in
            for r in (i * chunk)..<min(rows, (i + 1) * chunk) { activation.forward(p + r * ld) }
        }
    }

    /// RMSNorm of each query and key head (`[D]` weights) of every row of `qkv`, in place.
    private func normalizeHeads(_ qkv: Tensor, rows n: Int, _ queryNorm: Tensor, _ keyNorm: Tensor) {
        let c = config, ld = c.fusedQKVRows, d = c.headDim, eps = c.normEpsilon, base = qkv.pointer
        parallelFor(n) { r in
            let row = base + r * ld
            Kernels.rmsNorm(row, rows: c.headCount, width: d, ldx: d, weight: queryNorm.pointer, eps: eps, into: row, ldy: d)
            Kernels.rmsNorm(row + c.queryWidth, rows: c.keyValueHeadCount, width: d, ldx: d, weight: keyNorm.pointer,
                            eps: eps, into: row + c.queryWidth, ldy: d)
        }
    }

    /// The RoPE cos and sin of every new token's position, `[N, D]` (D/2 cosines, then D/2
    /// sines), from `scratch`: computed once per pass, not once per layer. Nil without RoPE.
    func rotaryAngles(_ rotary: RotaryEmbedding?, rows n: Int, sequences: [[Int]], starts: [Int], caches: [KVCache]) -> Tensor? {
        guard let rotary else { return nil }
        let d = config.headDim, half = d / 2
        let table = scratch.take([n, d])
        let base = table.pointer
        for (s, tokens) in sequences.enumerated() {
            let past = caches[s].count, start = starts[s]
            for t in tokens.indices {
                let row = base + (start + t) * d
                rotary.angles(position: past + t, cos: row, sin: row + half)
            }
        }
        return table
    }

    /// Applies RoPE (with the `angles` of ``rotaryAngles(_:rows:sequences:starts:caches:)``) to the
    /// new queries and keys in `qkv` and appends keys and values to each sequence's cache.
    func storeKeysAndValues(
        _ qkv: Tensor, layer: Int, sequences: [[Int]], starts: [Int], caches: [KVCache], rotary: RotaryEmbedding?,
        angles: Tensor?
    ) {
        let c = config, ld = c.fusedQKVRows, q = c.queryWidth, kv = c.keyValueWidth
        let base = qkv.pointer, half = c.headDim / 2
        for (s, tokens) in sequences.enumerated() {
            let cache = caches[s]
            let keys = cache.keys(layer: layer), values = cache.values(layer: layer)
            let past = cache.count, start = starts[s]
            parallelFor(tokens.count) { t in
                let row = base + (start + t) * ld
                if let rotary, let angles {
                    let cos = angles.pointer + (start + t) * c.headDim, sin = cos + half
                    rotary.apply(row, heads: c.headCount, cos: cos, sin: sin)
                    rotary.apply(row + q, heads: c.keyValueHeadCount, cos: cos, sin: sin)
                }
                (keys + (past + t) * kv).update(from: row + q, count: kv)
                (values + (past + t) * kv).update(from: row + q + kv, count: kv)
            }
        }
    }

    /// Causal multi-head attention of the new queries over each sequence's cached keys and
    /// values, writing `[N, H·D]`.
    ///
    /// Work is split into (sequence, KV head, block of query rows) tasks. The query heads that
    /// share a KV head (grouped-query attention) are stacked into one `[group·rows, D]` matrix,
    /// so each task is two larger matmuls (scores, then values) instead of one pair per head.
    func attend(
        _ qkv: Tensor, layer: Int, sequences: [[Int]], starts: [Int], caches: [KVCache],
        into output: Tensor
    ) {
        let c = config, ld = c.fusedQKVRows, d = c.headDim, kvWidth = c.keyValueWidth
        let group = c.headCount / c.keyValueHeadCount
        let scale = 1 / Float(d).squareRoot()
        let window = c.window(layer: layer) ?? Int.max
        let blockRows = 64
        struct Task { let sequence: Int, kvHead: Int, firstRow: Int, cost: Int, workspace: Int }
        var tasks: [Task] = []
        var workspaceSize = 0
        for (s, tokens) in sequences.enumerated() {
            for kvHead in 0..<c.keyValueHeadCount {
                for first in stride(from: 0, to: tokens.count, by: blockRows) {
                    let rows = min(blockRows, tokens.count - first)
                    let keyCount = caches[s].count + first + rows
                    tasks.append(Task(sequence: s, kvHead: kvHead, firstRow: first, cost: rows * keyCount,
                                      workspace: workspaceSize))
                    workspaceSize += group * rows * (keyCount + 2 * d)
                }
            }
        }
        // Largest first, claimed dynamically: the causal blocks differ in cost.
        tasks.sort { $0.cost > $1.cost }
        // Each task's queries, scores and context in one pooled buffer: per-task allocations of
        // up to 400 KB were fresh pages (page faults) on every call.
        let workspace = scratch.take([workspaceSize])
        defer { scratch.giveBack(workspace) }
        let qBase = qkv.pointer, out = output.pointer, outWidth = c.queryWidth, space = workspace.pointer
        parallelFor(tasks.count, dynamic: true) { i in
            let task = tasks[i]
            let s = task.sequence
            let past = caches[s].count
            let rows = min(blockRows, sequences[s].count - task.firstRow)
            let keyCount = past + task.firstRow + rows  // causal: the block's last query sees these
            let keys = caches[s].keys(layer: layer) + task.kvHead * d
            let values = caches[s].values(layer: layer) + task.kvHead * d
            let stacked = group * rows
            let queries = space + task.workspace
            let context = queries + stacked * d
            let scores = context + stacked * d
            let firstRow = qBase + (starts[s] + task.firstRow) * ld
            for g in 0..<group {
                let head = task.kvHead * group + g
                for r in 0..<rows {
                    (queries + (g * rows + r) * d).update(from: firstRow + r * ld + head * d, count: d)
                }
            }
            if rows <= 2 {
                // Decoding: a few query rows; OpenBLAS's small-matrix path costs more than the
                // arithmetic, so dot products and scaled adds directly.
                for g in 0..<group {
                    for r in 0..<rows {
                        let visible = past + task.firstRow + r + 1, first = max(0, visible - window)
                        let query = queries + (g * rows + r) * d, row = scores + (g * rows + r) * keyCount
                        for j in first..<visible { row[j] = scale * MatMul.dot(query, keys + j * kvWidth, d) }
                        Kernels.softmax(row + first, count: visible - first)
                        let result = context + (g * rows + r) * d
                        result.update(repeating: 0, count: d)
                        for j in first..<visible { Kernels.addScaled(values + j * kvWidth, row[j], into: result, count: d) }
                    }
                }
            } else {
                MatMul.gemm(transB: true, m: stacked, n: keyCount, k: d, alpha: scale, a: queries, lda: d,
                            b: keys, ldb: kvWidth, c: scores, ldc: keyCount)
                // Unnormalised probabilities (masked keys 0); each context row is divided by
                // its sum after the product.
                withUnsafeTemporaryAllocation(of: Float.self, capacity: stacked) { sums in
                    for g in 0..<group {
                        for r in 0..<rows {
                            let visible = past + task.firstRow + r + 1, first = max(0, visible - window)
                            let row = scores + (g * rows + r) * keyCount
                            sums[g * rows + r] = Kernels.exponentiateShifted(row + first, count: visible - first).sum
                            row.update(repeating: 0, count: first)
                            (row + visible).update(repeating: 0, count: keyCount - visible)
                        }
                    }
                    MatMul.gemm(m: stacked, n: d, k: keyCount, a: scores, lda: keyCount, b: values, ldb: kvWidth,
                                c: context, ldc: d)
                    for i in 0..<stacked {
                        let inverse = 1 / sums[i]
                        Kernels.mapSIMD(context + i * d, count: d) { $0 * inverse }
                    }
                }
            }
            let firstOut = out + (starts[s] + task.firstRow) * outWidth
            for g in 0..<group {
                let head = task.kvHead * group + g
                for r in 0..<rows {
                    (firstOut + r * outWidth + head * d).update(from: context + (g * rows + r) * d, count: d)
                }
            }
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
