import TensorCore

/// Causal grouped-query self-attention on a block's fused `[q | k | v]` rows, with what varies
/// between families: per-head q/k RMSNorm (Gemma), rotary positions (global, or local ones
/// for sliding-window blocks) and a sliding window. Forward and gradient side by side: the
/// forward pass and the tape's backward both call this.
///
/// Learned absolute positions (GPT-2) are added to the embeddings and never reach here.
struct SelfAttention: Sendable {
    let heads: Int
    let keyValueHeads: Int
    let headDim: Int
    /// Epsilon of the per-head q/k norms.
    let epsilon: Float
    /// Positions of the global blocks; nil without RoPE.
    let rotary: RotaryEmbedding?
    /// Positions of the sliding-window blocks, when they have their own.
    let localRotary: RotaryEmbedding?
    /// The window of each block (nil: the whole past).
    let windows: [Int?]

    var queryWidth: Int { heads * headDim }
    var keyValueWidth: Int { keyValueHeads * headDim }
    /// Floats per row of the fused projection.
    var fusedWidth: Int { queryWidth + 2 * keyValueWidth }

    /// The rotary embedding of `layer`'s block.
    func positions(layer: Int) -> RotaryEmbedding? {
        windows[layer] != nil ? (localRotary ?? rotary) : rotary
    }

    // MARK: Forward

    /// The RoPE cos and sin of every new token's position for the global and the local
    /// embedding, `[N, D]` each (D/2 cosines, then D/2 sines), from `scratch`: computed once per
    /// pass, not once per layer. Give them back with ``giveBack(_:to:)``.
    func angleTables(
        rows n: Int, sequences: [[Int]], starts: [Int], caches: [KVCache], scratch: ScratchPool
    )
        -> (global: Tensor?, local: Tensor?)
    {
        func table(_ rotary: RotaryEmbedding?) -> Tensor? {
            guard let rotary else { return nil }
            let half = headDim / 2
            let table = scratch.take([n, headDim])
            for (s, tokens) in sequences.enumerated() {
                let past = caches[s].count
                for t in tokens.indices {
                    let row = table.pointer + (starts[s] + t) * headDim
                    rotary.angles(position: past + t, cos: row, sin: row + half)
                }
            }
            return table
        }
        return (table(rotary), table(localRotary))
    }

    func giveBack(_ tables: (global: Tensor?, local: Tensor?), to scratch: ScratchPool) {
        if let table = tables.global { scratch.giveBack(table) }
        if let table = tables.local { scratch.giveBack(table) }
    }

    /// RMSNorm of each query and key head of every row of `qkv`, in place.
    func normalizeHeads(_ qkv: Tensor, rows n: Int, queryNorm: Tensor, keyNorm: Tensor) {
        let ld = fusedWidth
        let d = headDim
        let eps = epsilon
        let base = qkv.pointer
        let heads = heads
        let keyValueHeads = keyValueHeads
        let queryWidth = queryWidth
        parallelFor(n) { r in
            let row = base + r * ld
            Kernels.rmsNorm(row, rows: heads, width: d, ldx: d, weight: queryNorm.pointer, eps: eps, into: row, ldy: d)
            Kernels.rmsNorm(
                row + queryWidth, rows: keyValueHeads, width: d, ldx: d, weight: keyNorm.pointer,
                eps: eps, into: row + queryWidth, ldy: d)
        }
    }

    /// Rotates the new queries and keys in `qkv` (with `angles` from ``angleTables``) and
    /// appends keys and values to each sequence's cache, past its count.
    func storeKeysAndValues(
        _ qkv: Tensor, layer: Int, sequences: [[Int]], starts: [Int], caches: [KVCache],
        angles: (global: Tensor?, local: Tensor?)
    ) {
        let ld = fusedWidth
        let q = queryWidth
        let kv = keyValueWidth
        let d = headDim
        let heads = heads
        let keyValueHeads = keyValueHeads
        let local = windows[layer] != nil && localRotary != nil
        let rotary = local ? localRotary : rotary
        let table = local ? angles.local : angles.global
        let base = qkv.pointer
        let half = d / 2
        for (s, tokens) in sequences.enumerated() {
            let cache = caches[s]
            let keys = cache.keys(layer: layer)
            let values = cache.values(layer: layer)
            let past = cache.count
            let start = starts[s]
            parallelFor(tokens.count) { t in
                let row = base + (start + t) * ld
                if let rotary, let table {
                    let cos = table.pointer + (start + t) * d
                    let sin = cos + half
                    rotary.apply(row, heads: heads, cos: cos, sin: sin)
                    rotary.apply(row + q, heads: keyValueHeads, cos: cos, sin: sin)
                }
                (keys + (past + t) * kv).update(from: row + q, count: kv)
                (values + (past + t) * kv).update(from: row + q + kv, count: kv)
            }
        }
    }

    /// Causal multi-head attention of the new queries over each sequence's cached keys and
    /// values (within the block's window), writing `[N, H·D]`.
    ///
    /// Work is split into (sequence, KV head, block of query rows) tasks. The query heads that
    /// share a KV head (grouped-query attention) are stacked into one `[group·rows, D]` matrix,
    /// so each task is two larger matmuls (scores, then values) instead of one pair per head.
    func attend(
        _ qkv: Tensor, layer: Int, sequences: [[Int]], starts: [Int], caches: [KVCache], into output: Tensor,
        scratch: ScratchPool
    ) {
        let ld = fusedWidth
        let d = headDim
        let kvWidth = keyValueWidth
        let group = heads / keyValueHeads
        let scale = 1 / Float(d).squareRoot()
        let window = windows[layer] ?? Int.max
        let blockRows = 64
        struct Task { let sequence: Int, kvHead: Int, firstRow: Int, cost: Int, workspace: Int }
        var tasks: [Task] = []
        var workspaceSize = 0
        for (s, tokens) in sequences.enumerated() {
            for kvHead in 0..<keyValueHeads {
                for first in stride(from: 0, to: tokens.count, by: blockRows) {
                    let rows = min(blockRows, tokens.count - first)
                    let keyCount = caches[s].count + first + rows
                    tasks.append(
                        Task(
                            sequence: s, kvHead: kvHead, firstRow: first, cost: rows * keyCount,
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
        let qBase = qkv.pointer
        let out = output.pointer
        let outWidth = queryWidth
        let space = workspace.pointer
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
                        let visible = past + task.firstRow + r + 1
                        let first = max(0, visible - window)
                        let query = queries + (g * rows + r) * d
                        let row = scores + (g * rows + r) * keyCount
                        for j in first..<visible { row[j] = scale * MatMul.dot(query, keys + j * kvWidth, d) }
                        Kernels.softmax(row + first, count: visible - first)
                        let result = context + (g * rows + r) * d
                        result.update(repeating: 0, count: d)
                        for j in first..<visible { Kernels.addScaled(values + j * kvWidth, row[j], into: result, count: d) }
                    }
                }
            } else {
                MatMul.gemm(
                    transB: true, m: stacked, n: keyCount, k: d, alpha: scale, a: queries, lda: d,
                    b: keys, ldb: kvWidth, c: scores, ldc: keyCount)
                // Unnormalised probabilities (masked keys 0); each context row is divided by
                // its sum after the product.
                withUnsafeTemporaryAllocation(of: Float.self, capacity: stacked) { sums in
                    for g in 0..<group {
                        for r in 0..<rows {
                            let visible = past + task.firstRow + r + 1
                            let first = max(0, visible - window)
                            let row = scores + (g * rows + r) * keyCount
                            sums[g * rows + r] = Kernels.exponentiateShifted(row + first, count: visible - first).sum
                            row.update(repeating: 0, count: first)
                            (row + visible).update(repeating: 0, count: keyCount - visible)
                        }
                    }
                    MatMul.gemm(
                        m: stacked, n: d, k: keyCount, a: scores, lda: keyCount, b: values, ldb: kvWidth,
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

    // MARK: Backward

    /// `∂L/∂(q, k, v)` before RoPE, `[N, H·D + 2·Hkv·D]`, from `∂L/∂(attention output)` and the
    /// recorded `qkv` (after RoPE, as the forward pass stored it).
    ///
    /// A sequence that continues a cache (`pastLengths[s]` earlier tokens) attends to its past
    /// keys and values there; their gradients land in a scratch buffer and are dropped (the
    /// past is constant).
    func backward(
        qkv recorded: Tensor, layer: Int, sequences: [[Int]], starts: [Int], caches: [KVCache]?, pastLengths: [Int],
        dAttention: Tensor, into dQKV: Tensor, scratch: ScratchPool
    ) {
        let ld = fusedWidth
        let q = queryWidth
        let kv = keyValueWidth
        let d = headDim
        let heads = heads
        let keyValueHeads = keyValueHeads
        let qkv = recorded.pointer
        let dq = dQKV.pointer
        let window = windows[layer] ?? .max
        let longest =
            sequences.indices.map { s in pastLengths[s] > 0 ? pastLengths[s] + sequences[s].count : 0 }
            .max() ?? 0
        let pastGradients = longest > 0 ? scratch.take([2, longest, kv]) : nil
        defer { if let pastGradients { scratch.giveBack(pastGradients) } }
        for (s, tokens) in sequences.enumerated() where !tokens.isEmpty {
            let start = starts[s]
            let past = pastLengths[s]
            let base = qkv + start * ld
            let dBase = dq + start * ld
            if let caches, past > 0, let pastGradients {
                let keys = caches[s].keys(layer: layer)
                let values = caches[s].values(layer: layer)
                // The new slots hold whatever pass ran last from the prefix: put this pass's back.
                for t in 0..<tokens.count {
                    (keys + (past + t) * kv).update(from: base + t * ld + q, count: kv)
                    (values + (past + t) * kv).update(from: base + t * ld + q + kv, count: kv)
                }
                let dK = pastGradients.pointer
                let dV = dK + (past + tokens.count) * kv
                Backward.attention(
                    queries: base, ldq: ld, keys: keys, ldk: kv, values: values, ldv: kv,
                    newTokens: tokens.count, past: past, heads: heads, kvHeads: keyValueHeads,
                    headDim: d, dOut: dAttention.pointer + start * q, ldDOut: q,
                    dQ: dBase, ldDQ: ld, dK: dK, ldDK: kv, dV: dV, ldDV: kv, window: window)
                for t in 0..<tokens.count {
                    (dBase + t * ld + q).update(from: dK + (past + t) * kv, count: kv)
                    (dBase + t * ld + q + kv).update(from: dV + (past + t) * kv, count: kv)
                }
            } else {
                Backward.attention(
                    queries: base, ldq: ld, keys: base + q, ldk: ld, values: base + q + kv, ldv: ld,
                    newTokens: tokens.count, past: 0, heads: heads, kvHeads: keyValueHeads,
                    headDim: d, dOut: dAttention.pointer + start * q, ldDOut: q,
                    dQ: dBase, ldDQ: ld, dK: dBase + q, ldDK: ld, dV: dBase + q + kv, ldDV: ld, window: window)
            }
            // RoPE is a rotation: its gradient is the opposite rotation.
            if let rotary = positions(layer: layer) {
                parallelFor(tokens.count) { t in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: d) { angles in
                        let cos = angles.baseAddress!
                        let sin = cos + d / 2
                        rotary.angles(position: past + t, cos: cos, sin: sin)
                        let row = dBase + t * ld
                        rotary.applyTransposed(row, heads: heads, cos: cos, sin: sin)
                        rotary.applyTransposed(row + q, heads: keyValueHeads, cos: cos, sin: sin)
                    }
                }
            }
        }
    }

    /// Backward through the per-head q/k norms, in place on the q and k columns of `dQKV`, from
    /// `input`, the `[N, H·D + Hkv·D]` q and k before the norm.
    func normalizeHeadsBackward(_ input: Tensor, queryNorm: Tensor, keyNorm: Tensor, into dQKV: Tensor) {
        let ld = fusedWidth
        let d = headDim
        let q = queryWidth
        let width = q + keyValueWidth
        let heads = heads
        let keyValueHeads = keyValueHeads
        let x = input.pointer
        let dY = dQKV.pointer
        let eps = epsilon
        parallelFor(input.shape[0]) { r in
            Backward.rmsNorm(
                x + r * width, rows: heads, width: d, ldx: d, weight: queryNorm.pointer, eps: eps,
                dY: dY + r * ld, ldDY: d, dX: dY + r * ld, ldDX: d, dWeight: nil)
            Backward.rmsNorm(
                x + r * width + q, rows: keyValueHeads, width: d, ldx: d, weight: keyNorm.pointer,
                eps: eps, dY: dY + r * ld + q, ldDY: d, dX: dY + r * ld + q, ldDX: d, dWeight: nil)
        }
    }
}

extension SelfAttention {
    init(_ config: TransformerConfig) {
        var rotary: RotaryEmbedding?
        if case .rotary(_, let frequencies) = config.positions {
            rotary = RotaryEmbedding(inverseFrequencies: frequencies, headDim: config.headDim)
        }
        self.init(
            heads: config.headCount, keyValueHeads: config.keyValueHeadCount, headDim: config.headDim,
            epsilon: config.normEpsilon, rotary: rotary,
            localRotary: config.slidingWindow.map {
                RotaryEmbedding(inverseFrequencies: $0.inverseFrequencies, headDim: config.headDim)
            },
            windows: (0..<config.layerCount).map(config.window(layer:)))
    }
}
