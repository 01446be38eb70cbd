import TensorCore

/// The few layer operations the editor networks are built from, forward and backward, on
/// `[T, width]` row-major tensors (rows are tokens). Backward functions add into gradients.
enum LayerMath {
    /// `x · Wᵀ + b` for `W` `[out, in]`.
    static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        let rows = x.shape[0], out = w.shape[0], width = w.shape[1]
        precondition(x.shape[1] == width, "input \(x.shape) for weight \(w.shape)")
        let y = Tensor(zeros: [rows, out])
        MatMul.gemm(transB: true, m: rows, n: out, k: width, a: x.pointer, lda: width, b: w.pointer, ldb: width,
                    c: y.pointer, ldc: out)
        if let b {
            for r in 0..<rows { Kernels.add(b.pointer, into: y.pointer + r * out, count: out) }
        }
        return y
    }

    /// Backward of ``linear(_:_:_:)``: `dW += dyᵀ x`, `db += Σ_rows dy`; returns `dy · W` when
    /// `inputGradient` (else nil).
    @discardableResult
    static func linearBackward(
        _ dy: Tensor, input x: Tensor, weight w: Tensor, dWeight: Tensor, dBias: Tensor?, inputGradient: Bool
    ) -> Tensor? {
        let rows = x.shape[0], out = w.shape[0], width = w.shape[1]
        MatMul.gemm(transA: true, m: out, n: width, k: rows, a: dy.pointer, lda: out, b: x.pointer, ldb: width,
                    beta: 1, c: dWeight.pointer, ldc: width)
        if let dBias { sumRows(dy, into: dBias) }
        guard inputGradient else { return nil }
        let dx = Tensor(zeros: [rows, width])
        MatMul.gemm(m: rows, n: width, k: out, a: dy.pointer, lda: out, b: w.pointer, ldb: width, c: dx.pointer, ldc: width)
        return dx
    }

    /// `gradient += Σ_rows x`.
    static func sumRows(_ x: Tensor, into gradient: Tensor) {
        let width = x.shape[1]
        for r in 0..<x.shape[0] { Kernels.add(x.pointer + r * width, into: gradient.pointer, count: width) }
    }

    /// FiLM: `a ⊙ scale[m] + shift[m]`, the module's row of each table broadcast over rows.
    static func film(_ a: Tensor, scale: Tensor, shift: Tensor, module m: Int) -> Tensor {
        let width = a.shape[1], s = scale.pointer + m * width, b = shift.pointer + m * width
        let y = Tensor(zeros: a.shape)
        for r in 0..<a.shape[0] {
            let row = a.pointer + r * width, out = y.pointer + r * width
            for j in 0..<width { out[j] = row[j] * s[j] + b[j] }
        }
        return y
    }

    /// Backward of ``film(_:scale:shift:module:)``: adds into the module's rows of the table
    /// gradients and returns `dy ⊙ scale[m]`.
    static func filmBackward(
        _ dy: Tensor, input a: Tensor, scale: Tensor, module m: Int, dScale: Tensor, dShift: Tensor
    ) -> Tensor {
        let width = a.shape[1], s = scale.pointer + m * width
        let ds = dScale.pointer + m * width, db = dShift.pointer + m * width
        let da = Tensor(zeros: a.shape)
        for r in 0..<a.shape[0] {
            let g = dy.pointer + r * width, x = a.pointer + r * width, out = da.pointer + r * width
            for j in 0..<width {
                ds[j] += g[j] * x[j]
                db[j] += g[j]
                out[j] = g[j] * s[j]
            }
        }
        return da
    }

    static func relu(_ x: Tensor) -> Tensor {
        let y = Tensor(zeros: x.shape)
        for i in 0..<x.count { y.pointer[i] = max(0, x.pointer[i]) }
        return y
    }

    /// `dy ⊙ (x > 0)`, in place in `dy`.
    static func reluBackward(_ dy: Tensor, input x: Tensor) {
        for i in 0..<x.count where x.pointer[i] <= 0 { dy.pointer[i] = 0 }
    }
}
