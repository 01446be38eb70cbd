import Foundation

/// Backward (vector-Jacobian product) kernels of the transformer's forward operations, on raw
/// row-major buffers laid out as in ``Kernels``.
///
/// Each kernel takes the forward inputs and `dY = ∂L/∂y` (the gradient of a scalar loss `L`
/// with respect to the forward output) and returns the gradients with respect to the inputs.
/// Conventions:
/// - **Input gradients** (`dX`, `dQ`, …) overwrite their buffer, or are added to it when
///   `accumulate` is true (a tensor read by two operations, as a residual stream is, receives
///   the sum of both gradients).
/// - **Parameter gradients** of the row-wise kernels (norm weights and biases, embedding rows)
///   are always *accumulated* (`+=`) over the rows: zero them before the first call. Calls
///   that run concurrently need separate parameter-gradient buffers.
/// - Statistics (norm scales, attention probabilities) are recomputed from the forward inputs,
///   so callers keep only those inputs.
/// - Residual adds need no kernel (`y = a + b` passes `dY` to both `a` and `b`); biases are
///   ``linearBias(_:rows:outputs:ldDY:into:accumulate:)``.
///
/// Row-wise kernels run on the calling thread, as the forward ones do; the linear and
/// attention kernels use the ``parallelFor(_:dynamic:_:)`` pool.
public enum Backward {
    // MARK: Linear layers

    /// Input gradient of a linear layer `Y[M, N] = X[M, K] · Wᵀ (+ b)` with `W` stored `[N, K]`:
    /// `dX[M, K] = dY[M, N] · W` (`dX += dY · W` when `accumulate`).
    public static func linearInput(
        _ dY: UnsafePointer<Float>, rows m: Int, ldDY: Int,
        weight: UnsafePointer<Float>, outputs n: Int, inputs k: Int,
        into dX: UnsafeMutablePointer<Float>, ldDX: Int, accumulate: Bool = false
    ) {
        if m == 1 {
            // One row (sgemm is slow there): `dX += dY[j] · W[j]` over the rows of W, split
            // by blocks of columns.
            let block = 256
            parallelFor((k + block - 1) / block) { b in
                let start = b * block
                let count = min(block, k - start)
                if !accumulate { (dX + start).update(repeating: 0, count: count) }
                for j in 0..<n { Kernels.addScaled(weight + j * k + start, dY[j], into: dX + start, count: count) }
            }
            return
        }
        MatMul.parallelGEMM(
            m: m, n: k, k: n, a: dY, lda: ldDY, b: weight, ldb: k,
            beta: accumulate ? 1 : 0, c: dX, ldc: ldDX)
    }

    /// Weight gradient of a linear layer `Y = X · Wᵀ`: `dW[N, K] = dYᵀ · X = Σ_r dY[r]ᵀ X[r]`
    /// (`dW +=` when `accumulate`), with `dW` contiguous `[N, K]`.
    public static func linearWeight(
        _ dY: UnsafePointer<Float>, rows m: Int, ldDY: Int,
        input x: UnsafePointer<Float>, ldx: Int, outputs n: Int, inputs k: Int,
        into dW: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        if m == 1 {
            // One row: the outer product `dW[j] = dY[j] · x`, split by blocks of rows.
            let block = 64
            parallelFor((n + block - 1) / block) { b in
                for j in (b * block)..<min(n, (b + 1) * block) {
                    let row = dW + j * k
                    let scale = dY[j]
                    for i in stride(from: 0, to: k, by: 16) {
                        let c = min(16, k - i)
                        storeSIMD(loadSIMD(x + i, c) * scale, row + i, c, accumulate: accumulate)
                    }
                }
            }
            return
        }
        MatMul.parallelGEMM(
            transA: true, m: n, n: k, k: m, a: dY, lda: ldDY, b: x, ldb: ldx,
            beta: accumulate ? 1 : 0, c: dW, ldc: k)
    }

    /// Bias gradient of a linear layer: the column sums `dBias[j] = Σ_r dY[r, j]`
    /// (`dBias +=` when `accumulate`).
    public static func linearBias(
        _ dY: UnsafePointer<Float>, rows: Int, outputs n: Int, ldDY: Int,
        into dBias: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        if !accumulate { dBias.update(repeating: 0, count: n) }
        for r in 0..<rows { Kernels.addScaled(dY + r * ldDY, 1, into: dBias, count: n) }
    }

    // MARK: Normalisation

    /// RMSNorm backward. With `s = 1/sqrt(mean(x²) + eps)` and `g = dY ⊙ weight` per row:
    /// `dX = s · (g − x · s² · ⟨g, x⟩ / width)` and `dWeight += dY ⊙ x · s` (summed over rows;
    /// pass nil to skip). `dX` may alias `dY`.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, ldx: Int,
        weight: UnsafePointer<Float>, eps: Float,
        dY: UnsafePointer<Float>, ldDY: Int,
        dX: UnsafeMutablePointer<Float>, ldDX: Int, accumulate: Bool = false,
        dWeight: UnsafeMutablePointer<Float>?
    ) {
        for r in 0..<rows {
            let xr = x + r * ldx
            let gr = dY + r * ldDY
            let dxr = dX + r * ldDX
            let s = 1 / (MatMul.dot(xr, xr, width) / Float(width) + eps).squareRoot()
            var gx = SIMD16<Float>()
            for i in stride(from: 0, to: width, by: 16) {
                let c = min(16, width - i)
                gx += loadSIMD(gr + i, c) * loadSIMD(weight + i, c) * loadSIMD(xr + i, c)
            }
            let k = gx.sum() * s * s / Float(width)
            for i in stride(from: 0, to: width, by: 16) {
                let c = min(16, width - i)
                let xv = loadSIMD(xr + i, c)
                let dy = loadSIMD(gr + i, c)
                let g = dy * loadSIMD(weight + i, c)
                storeSIMD((g - xv * k) * s, dxr + i, c, accumulate: accumulate)
                if let dWeight { storeSIMD(dy * xv * s, dWeight + i, c, accumulate: true) }
            }
        }
    }

    /// LayerNorm backward. With `x̂ = (x − mean) · s`, `s = 1/sqrt(var + eps)` and
    /// `g = dY ⊙ weight` per row: `dX = s · (g − mean(g) − x̂ · mean(g ⊙ x̂))`,
    /// `dWeight += dY ⊙ x̂` and `dBias += dY` (summed over rows; nil skips). `dX` may alias `dY`.
    public static func layerNorm(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, ldx: Int,
        weight: UnsafePointer<Float>, eps: Float,
        dY: UnsafePointer<Float>, ldDY: Int,
        dX: UnsafeMutablePointer<Float>, ldDX: Int, accumulate: Bool = false,
        dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?
    ) {
        let n = Float(width)
        for r in 0..<rows {
            let xr = x + r * ldx
            let gr = dY + r * ldDY
            let dxr = dX + r * ldDX
            var sum = SIMD16<Float>()
            for i in stride(from: 0, to: width, by: 16) { sum += loadSIMD(xr + i, min(16, width - i)) }
            let mean = sum.sum() / n
            var squares = SIMD16<Float>()
            var gSum = SIMD16<Float>()
            var gxSum = SIMD16<Float>()
            for i in stride(from: 0, to: width, by: 16) {
                let c = min(16, width - i)
                var d = loadSIMD(xr + i, c) - mean
                d.replace(with: 0, where: lanesBeyond(c))  // padding lanes hold −mean
                squares += d * d
                let g = loadSIMD(gr + i, c) * loadSIMD(weight + i, c)
                gSum += g
                gxSum += g * d
            }
            let s = 1 / (squares.sum() / n + eps).squareRoot()
            let gMean = gSum.sum() / n
            let gxMean = gxSum.sum() * s / n
            for i in stride(from: 0, to: width, by: 16) {
                let c = min(16, width - i)
                let xHat = (loadSIMD(xr + i, c) - mean) * s
                let dy = loadSIMD(gr + i, c)
                let g = dy * loadSIMD(weight + i, c)
                storeSIMD((g - gMean - xHat * gxMean) * s, dxr + i, c, accumulate: accumulate)
                if let dWeight { storeSIMD(dy * xHat, dWeight + i, c, accumulate: true) }
                if let dBias { storeSIMD(dy, dBias + i, c, accumulate: true) }
            }
        }
    }

    // MARK: Elementwise

    /// Softmax backward over `count` values: for `p = softmax(z)`,
    /// `dZ = p ⊙ (dP − ⟨p, dP⟩)`. `dZ` may alias `dP`.
    public static func softmax(
        _ p: UnsafePointer<Float>, dP: UnsafePointer<Float>, count: Int,
        into dZ: UnsafeMutablePointer<Float>
    ) {
        let inner = MatMul.dot(p, dP, count)
        for i in stride(from: 0, to: count, by: 16) {
            let c = min(16, count - i)
            storeSIMD(loadSIMD(p + i, c) * (loadSIMD(dP + i, c) - inner), dZ + i, c, accumulate: false)
        }
    }

    /// SwiGLU backward for `out = silu(gate) ⊙ up`, with `σ(g) = 1/(1 + e^(−g))` and
    /// `silu(g) = g·σ(g)`: `dUp = dOut ⊙ silu(gate)` and
    /// `dGate = dOut ⊙ up ⊙ σ(gate) ⊙ (1 + gate ⊙ (1 − σ(gate)))`.
    /// `dGate` or `dUp` may alias `dOut`.
    public static func swiglu(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
        dOut: UnsafePointer<Float>,
        dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>
    ) {
        for i in stride(from: 0, to: count, by: 16) {
            let c = min(16, count - i)
            let g = loadSIMD(gate + i, c)
            let u = loadSIMD(up + i, c)
            let d = loadSIMD(dOut + i, c)
            let sigma = 1 / (1 + VectorMath.exp(-g))
            let silu = g * sigma
            let dSilu = sigma * (1 + g * (1 - sigma))
            storeSIMD(d * silu, dUp + i, c, accumulate: false)
            storeSIMD(d * u * dSilu, dGate + i, c, accumulate: false)
        }
    }

    /// GELU-tanh backward for `y = ½x(1 + t)`, `t = tanh(u)`, `u = √(2/π)(x + 0.044715x³)`:
    /// `dX = dY ⊙ (½(1 + t) + ½x(1 − t²) · √(2/π)(1 + 3·0.044715x²))`, with `x` the
    /// pre-activation (the forward kernel overwrites it: keep a copy). `dX` may alias `dY`.
    public static func geluTanh(
        _ x: UnsafePointer<Float>, count: Int, dY: UnsafePointer<Float>,
        into dX: UnsafeMutablePointer<Float>
    ) {
        let k: Float = 0.7978845608028654  // sqrt(2/π)
        for i in stride(from: 0, to: count, by: 16) {
            let c = min(16, count - i)
            let v = loadSIMD(x + i, c)
            let v2 = v * v
            let u = k * (v + 0.044715 * v2 * v)
            let t = 1 - 2 / (VectorMath.exp(2 * u) + 1)
            let du: SIMD16<Float> = k * (1 + 0.134145 * v2)  // du/dx
            let slope: SIMD16<Float> = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du
            storeSIMD(loadSIMD(dY + i, c) * slope, dX + i, c, accumulate: false)
        }
    }

    // MARK: Embeddings

    /// Embedding (row gather) backward, a scatter-add: `dTable[tokens[r]] += dX[r]` for each
    /// of `rows` rows of `width`. Always accumulates. Also serves learned position
    /// embeddings, with positions as the indices.
    public static func embedding(
        _ dX: UnsafePointer<Float>, rows: Int, width: Int, ldDX: Int, tokens: UnsafePointer<Int>,
        into dTable: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            precondition(tokens[r] >= 0, "negative embedding index \(tokens[r])")
            Kernels.addScaled(dX + r * ldDX, 1, into: dTable + tokens[r] * width, count: width)
        }
    }

    // MARK: Attention

    /// Causal grouped-query attention backward for one sequence.
    ///
    /// Forward (as in `Transformer.attend`): `T` new queries at positions `P..<P+T` attend to
    /// keys and values at positions `0..<P+T`. Query head `h` uses KV head `h / (H / Hkv)`;
    /// with `S = Q_h K_gᵀ / √D` masked to the visible keys (query `t` sees `0...P+t`, or only
    /// the last `window` of them),
    /// `A = softmax(S)` row-wise and `O_h = A V_g`. Backward:
    /// `dA = dO_h V_gᵀ`, `dS = A ⊙ (dA − rowsum(A ⊙ dA))`, `dQ_h = dS K_g / √D`,
    /// `dK_g = Σ_h dSᵀ Q_h / √D`, `dV_g = Σ_h Aᵀ dO_h`.
    ///
    /// - Parameters:
    ///   - queries: `[T, H·D]` after RoPE, rows `ldq` apart.
    ///   - keys, values: `[P+T, Hkv·D]` (keys after RoPE), rows `ldk` / `ldv` apart.
    ///   - dOut: `[T, H·D]`, the gradient at the attention output (before the output projection).
    ///   - dQ: `[T, H·D]`; dK, dV: `[P+T, Hkv·D]` (every row written), overwritten or, with
    ///     `accumulate`, added to. RoPE's backward (``RotaryEmbedding/applyTransposed(_:heads:cos:sin:)``)
    ///     is then applied to `dQ` and `dK` by the caller.
    ///
    /// The probabilities are recomputed, not saved: the forward keeps no `[H, T, P+T]` tensor,
    /// and the backward costs about the forward's three matmuls plus two. Work is split by KV
    /// head (each owns its columns of `dK`/`dV`; inside a running ``parallelFor(_:dynamic:_:)``,
    /// e.g. over the sequences of a batch, it runs serially) and, within a head, runs over
    /// blocks of 64 query rows that see only their causal prefix of keys; memory is two
    /// `[group·64, P+T]` buffers per running task.
    public static func attention(
        queries q: UnsafePointer<Float>, ldq: Int,
        keys k: UnsafePointer<Float>, ldk: Int, values v: UnsafePointer<Float>, ldv: Int,
        newTokens t: Int, past p: Int, heads: Int, kvHeads: Int, headDim d: Int,
        dOut: UnsafePointer<Float>, ldDOut: Int,
        dQ: UnsafeMutablePointer<Float>, ldDQ: Int,
        dK: UnsafeMutablePointer<Float>, ldDK: Int,
        dV: UnsafeMutablePointer<Float>, ldDV: Int,
        window: Int = .max, accumulate: Bool = false
    ) {
        precondition(kvHeads > 0 && heads % kvHeads == 0, "\(heads) heads for \(kvHeads) KV heads")
        let group = heads / kvHeads
        let length = p + t
        let blockRows = 64
        let scale = 1 / Float(d).squareRoot()
        parallelFor(kvHeads, dynamic: true) { kvHead in
            let keys = k + kvHead * d
            let values = v + kvHead * d
            let dKeys = dK + kvHead * d
            let dValues = dV + kvHead * d
            if !accumulate {
                for j in 0..<length {
                    (dKeys + j * ldDK).update(repeating: 0, count: d)
                    (dValues + j * ldDV).update(repeating: 0, count: d)
                }
            }
            let maxStacked = group * min(blockRows, t)
            let queries = UnsafeMutablePointer<Float>.allocate(capacity: maxStacked * d)
            let dContext = UnsafeMutablePointer<Float>.allocate(capacity: maxStacked * d)
            let dQueries = UnsafeMutablePointer<Float>.allocate(capacity: maxStacked * d)
            let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: maxStacked * length)
            let dScores = UnsafeMutablePointer<Float>.allocate(capacity: maxStacked * length)
            defer {
                queries.deallocate()
                dContext.deallocate()
                dQueries.deallocate()
                probabilities.deallocate()
                dScores.deallocate()
            }
            for first in stride(from: 0, to: t, by: blockRows) {
                let rows = min(blockRows, t - first)
                let stacked = group * rows
                let keyCount = p + first + rows  // the block's last query sees these
                // Stack the group's query heads: row g·rows + r is head (kvHead·group + g), query first + r.
                for g in 0..<group {
                    let column = (kvHead * group + g) * d
                    for r in 0..<rows {
                        (queries + (g * rows + r) * d).update(from: q + (first + r) * ldq + column, count: d)
                        (dContext + (g * rows + r) * d).update(from: dOut + (first + r) * ldDOut + column, count: d)
                    }
                }
                MatMul.gemm(
                    transB: true, m: stacked, n: keyCount, k: d, alpha: scale, a: queries, lda: d,
                    b: keys, ldb: ldk, c: probabilities, ldc: keyCount)
                MatMul.gemm(
                    transB: true, m: stacked, n: keyCount, k: d, a: dContext, lda: d,
                    b: values, ldb: ldv, c: dScores, ldc: keyCount)
                for g in 0..<group {
                    for r in 0..<rows {
                        let visible = p + first + r + 1
                        let oldest = max(0, visible - window)
                        let a = probabilities + (g * rows + r) * keyCount
                        let da = dScores + (g * rows + r) * keyCount
                        Kernels.softmax(a + oldest, count: visible - oldest)
                        softmax(a + oldest, dP: da + oldest, count: visible - oldest, into: da + oldest)
                        a.update(repeating: 0, count: oldest)
                        da.update(repeating: 0, count: oldest)
                        (a + visible).update(repeating: 0, count: keyCount - visible)
                        (da + visible).update(repeating: 0, count: keyCount - visible)
                    }
                }
                MatMul.gemm(
                    transA: true, m: keyCount, n: d, k: stacked, a: probabilities, lda: keyCount,
                    b: dContext, ldb: d, beta: 1, c: dValues, ldc: ldDV)
                MatMul.gemm(
                    transA: true, m: keyCount, n: d, k: stacked, alpha: scale, a: dScores, lda: keyCount,
                    b: queries, ldb: d, beta: 1, c: dKeys, ldc: ldDK)
                MatMul.gemm(
                    m: stacked, n: d, k: keyCount, alpha: scale, a: dScores, lda: keyCount,
                    b: keys, ldb: ldk, c: dQueries, ldc: d)
                for g in 0..<group {
                    let column = (kvHead * group + g) * d
                    for r in 0..<rows {
                        let source = dQueries + (g * rows + r) * d
                        let target = dQ + (first + r) * ldDQ + column
                        if accumulate {
                            Kernels.addScaled(source, 1, into: target, count: d)
                        } else {
                            target.update(from: source, count: d)
                        }
                    }
                }
            }
        }
    }
}

extension RotaryEmbedding {
    /// RoPE backward: the transposed rotation, in place on `heads` heads of gradients (stride
    /// `headDim`), with the same `cos`/`sin` as the forward ``apply(_:heads:cos:sin:)``. For
    /// each pair `(a, b) = (i, i + D/2)`: `da = cos·dy_a + sin·dy_b`, `db = cos·dy_b − sin·dy_a`
    /// (the rotation by the opposite angle; with `attentionScaling` it is the transpose, not
    /// the inverse).
    @inline(__always)
    public func applyTransposed(
        _ x: UnsafeMutablePointer<Float>, heads: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        rotate(x, heads: heads, cos: cos, sin: sin, direction: -1)
    }
}

// MARK: SIMD helpers

/// Loads `count ≤ 16` floats, zero-padding the remaining lanes.
@inline(__always)
func loadSIMD(_ p: UnsafePointer<Float>, _ count: Int) -> SIMD16<Float> {
    if count == 16 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }
    var v = SIMD16<Float>()
    for j in 0..<count { v[j] = p[j] }
    return v
}

/// Stores the first `count ≤ 16` lanes of `v` (adds them to `p` when `accumulate`).
@inline(__always)
func storeSIMD(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>, _ count: Int, accumulate: Bool) {
    if count == 16 {
        let raw = UnsafeMutableRawPointer(p)
        raw.storeBytes(of: accumulate ? raw.loadUnaligned(as: SIMD16<Float>.self) + v : v, as: SIMD16<Float>.self)
    } else {
        for j in 0..<count { p[j] = accumulate ? p[j] + v[j] : v[j] }
    }
}

/// Lanes `count..<16`.
@inline(__always)
func lanesBeyond(_ count: Int) -> SIMDMask<SIMD16<Int32>> {
    SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) .>= SIMD16<Int32>(repeating: Int32(count))
}
