import TensorCore

/// The few layer operations the editor networks are built from, forward and backward, on
/// `[T, width]` row-major tensors (rows are tokens). Backward functions add into gradients.
enum LayerMath {
    /// `x · Wᵀ + b` for `W` `[out, in]`.
    static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        let rows = x.shape[0]
        let out = w.shape[0]
        precondition(x.shape[1] == w.shape[1], "input \(x.shape) for weight \(w.shape)")
        let y = Tensor(zeros: [rows, out])
        MatMul.linear(x.pointer, rows: rows, ldx: x.shape[1], weight: w, bias: b, into: y.pointer, ldy: out)
        return y
    }

    /// Backward of ``linear(_:_:_:)`` (TensorCore's ``Backward`` kernels): `dW += dyᵀ x`,
    /// `db += Σ_rows dy`; returns `dy · W` when `inputGradient` (else nil).
    @discardableResult
    static func linearBackward(
        _ dy: Tensor, input x: Tensor, weight w: Tensor, dWeight: Tensor, dBias: Tensor?, inputGradient: Bool
    ) -> Tensor? {
        let rows = x.shape[0]
        let out = w.shape[0]
        let width = w.shape[1]
        Backward.linearWeight(
            dy.pointer, rows: rows, ldDY: out, input: x.pointer, ldx: width, outputs: out, inputs: width,
            into: dWeight.pointer, accumulate: true)
        if let dBias { Backward.linearBias(dy.pointer, rows: rows, outputs: out, ldDY: out, into: dBias.pointer, accumulate: true) }
        guard inputGradient else { return nil }
        let dx = Tensor(zeros: [rows, width])
        Backward.linearInput(
            dy.pointer, rows: rows, ldDY: out, weight: w.pointer, outputs: out, inputs: width,
            into: dx.pointer, ldDX: width)
        return dx
    }

    /// FiLM: `a ⊙ scale[m] + shift[m]`, the module's row of each table broadcast over rows.
    static func film(_ a: Tensor, scale: Tensor, shift: Tensor, module m: Int) -> Tensor {
        let width = a.shape[1]
        let (s, b) = (scale.pointer + m * width, shift.pointer + m * width)
        let y = Tensor(zeros: a.shape)
        for r in 0..<a.shape[0] {
            let (row, out) = (a.pointer + r * width, y.pointer + r * width)
            for j in 0..<width { out[j] = row[j] * s[j] + b[j] }
        }
        return y
    }

    /// Backward of ``film(_:scale:shift:module:)``: adds into the module's rows of the table
    /// gradients and returns `dy ⊙ scale[m]`.
    static func filmBackward(
        _ dy: Tensor, input a: Tensor, scale: Tensor, module m: Int, dScale: Tensor, dShift: Tensor
    ) -> Tensor {
        let width = a.shape[1]
        let s = scale.pointer + m * width
        let ds = dScale.pointer + m * width
        let db = dShift.pointer + m * width
        let da = Tensor(zeros: a.shape)
        for r in 0..<a.shape[0] {
            let g = dy.pointer + r * width
            let x = a.pointer + r * width
            let out = da.pointer + r * width
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
