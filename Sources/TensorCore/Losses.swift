import Foundation

/// The losses knowledge editors optimise, each returning its value and (optionally) its
/// gradient, on raw row-major buffers.
///
/// Reduction over rows: a loss over `R` rows is `Σ_r w_r · loss_r`, with per-row weights `w`
/// given by the caller or, when `weights` is nil, `w_r = 1/R` (the mean). Every gradient is
/// that of the returned value. Rows run in parallel on the ``parallelFor(_:dynamic:_:)`` pool;
/// per-row values are summed in row order (in Double), so results do not depend on the thread
/// count.
public enum Losses {
    /// Token cross-entropy (negative log-likelihood) of `targets` under `logits`.
    ///
    /// `loss = Σ_r w_r · (logsumexp(z_r) − z_r[targets[r]])` over the `rows` rows of
    /// `logits` `[R, V]` (the positions a loss reads, e.g. the logits selected at each target
    /// token's preceding position), with `w_r = 1/R` by default (mean NLL). When `dLogits` is
    /// given, it receives `dz_r = w_r · (softmax(z_r) − onehot(targets[r]))`; it may alias
    /// `logits`. ROME's loss (mean over each prompt's target tokens, then over prompts) is
    /// `w_r = 1 / (prompts · targetTokens(prompt of r))`.
    public static func crossEntropy(
        logits: UnsafePointer<Float>, rows: Int, vocabularySize v: Int, ldLogits: Int,
        targets: UnsafePointer<Int>, weights: UnsafePointer<Float>? = nil,
        dLogits: UnsafeMutablePointer<Float>?, ldDLogits: Int
    ) -> Float {
        let losses = UnsafeMutablePointer<Double>.allocate(capacity: max(rows, 1))
        defer { losses.deallocate() }
        parallelFor(rows) { r in
            let target = targets[r]
            precondition(target >= 0 && target < v, "target \(target) outside the vocabulary (0..<\(v))")
            let w = weights?[r] ?? 1 / Float(rows)
            let z = logits + r * ldLogits
            let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: v)
            defer { probabilities.deallocate() }
            probabilities.update(from: z, count: v)
            let lse = Kernels.softmax(probabilities, count: v)
            losses[r] = Double(w) * (Double(lse) - Double(z[target]))
            if let dLogits {
                let dz = dLogits + r * ldDLogits
                for i in stride(from: 0, to: v, by: 16) {
                    let c = min(16, v - i)
                    storeSIMD(loadSIMD(probabilities + i, c) * w, dz + i, c, accumulate: false)
                }
                dz[target] -= w
            }
        }
        return Float((0..<rows).reduce(0.0) { $0 + losses[$1] })
    }

    /// KL divergence `KL(p ‖ q) = Σ_i p_i (log p_i − log q_i)` between the next-token
    /// distributions `p = softmax(reference)` and `q = softmax(edited)`, row by row, reduced
    /// with weights `w_r` (default `1/R`: PyTorch's `batchmean`).
    ///
    /// The direction is ROME's "essence" loss, `kl_div(log q, log p, log_target=True)`: the
    /// original model's distribution `p` is the fixed reference and the gradient is taken
    /// with respect to the edited logits only: `dEdited_r = w_r · (q_r − p_r)` (when given; it
    /// may alias `edited`). Logits must be finite; terms with `p_i = 0` count as 0.
    public static func klDivergence(
        reference: UnsafePointer<Float>, ldReference: Int,
        edited: UnsafePointer<Float>, ldEdited: Int,
        rows: Int, vocabularySize v: Int, weights: UnsafePointer<Float>? = nil,
        dEdited: UnsafeMutablePointer<Float>?, ldDEdited: Int
    ) -> Float {
        let losses = UnsafeMutablePointer<Double>.allocate(capacity: max(rows, 1))
        defer { losses.deallocate() }
        parallelFor(rows) { r in
            let w = weights?[r] ?? 1 / Float(rows)
            let a = reference + r * ldReference
            let b = edited + r * ldEdited
            let p = UnsafeMutablePointer<Float>.allocate(capacity: 2 * v)
            let q = p + v
            defer { p.deallocate() }
            p.update(from: a, count: v)
            q.update(from: b, count: v)
            let lseDifference = Kernels.softmax(p, count: v) - Kernels.softmax(q, count: v)
            // log p_i − log q_i = (a_i − b_i) − (lse(a) − lse(b)), without forming either log.
            var sum = SIMD16<Float>()
            for i in stride(from: 0, to: v, by: 16) {
                let c = min(16, v - i)
                let pv = loadSIMD(p + i, c)
                var term = pv * ((loadSIMD(a + i, c) - loadSIMD(b + i, c)) - lseDifference)
                term.replace(with: 0, where: pv .== 0)
                sum += term
            }
            losses[r] = Double(w) * Double(sum.sum())
            if let dEdited {
                let db = dEdited + r * ldDEdited
                for i in stride(from: 0, to: v, by: 16) {
                    let c = min(16, v - i)
                    storeSIMD((loadSIMD(q + i, c) - loadSIMD(p + i, c)) * w, db + i, c, accumulate: false)
                }
            }
        }
        return Float((0..<rows).reduce(0.0) { $0 + losses[$1] })
    }

    /// Scaled squared L2 norm `scale · ‖x‖² = scale · Σ x_i²` over `count` floats; when `dX`
    /// is given it receives `2 · scale · x` (added to it when `accumulate`; it may alias `x`).
    @discardableResult
    public static func squaredNorm(
        _ x: UnsafePointer<Float>, count: Int, scale: Float = 1,
        dX: UnsafeMutablePointer<Float>? = nil, accumulate: Bool = false
    ) -> Float {
        let value = scale * MatMul.dot(x, x, count)
        if let dX {
            for i in stride(from: 0, to: count, by: 16) {
                let c = min(16, count - i)
                storeSIMD(loadSIMD(x + i, c) * (2 * scale), dX + i, c, accumulate: accumulate)
            }
        }
        return value
    }
}
