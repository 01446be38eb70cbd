import TensorCore

/// RMSNorm or LayerNorm over rows of one width, with its gradient beside it: the forward pass
/// and the tape's backward both call this.
struct Normalization: Sendable {
    let kind: TransformerConfig.NormKind
    let width: Int
    let epsilon: Float

    /// Rows processed per parallel task.
    private static let chunk = 16

    /// `y = norm(x) ⊙ weight (+ bias)` for `rows` rows; `y` may be `x`.
    func forward(_ x: UnsafePointer<Float>, rows: Int, weight: Tensor, bias: Tensor?, into y: UnsafeMutablePointer<Float>) {
        let width = width
        let eps = epsilon
        let wp = weight.pointer
        let bp = bias?.pointer
        let layer = kind == .layer
        parallelFor((rows + Self.chunk - 1) / Self.chunk) { i in
            let r0 = i * Self.chunk
            let count = min(Self.chunk, rows - r0)
            if layer {
                Kernels.layerNorm(
                    x + r0 * width, rows: count, width: width, ldx: width, weight: wp,
                    bias: bp, eps: eps, into: y + r0 * width, ldy: width)
            } else {
                Kernels.rmsNorm(
                    x + r0 * width, rows: count, width: width, ldx: width, weight: wp,
                    eps: eps, into: y + r0 * width, ldy: width)
            }
        }
    }

    /// `dX (+)= ∂norm/∂x · dY` from the norm's input `x`; `dWeight +=` when given (serially,
    /// since it sums over rows).
    func backward(
        _ x: UnsafePointer<Float>, rows: Int, weight: Tensor, dY: UnsafePointer<Float>,
        into dX: UnsafeMutablePointer<Float>, accumulate: Bool, dWeight: Tensor?
    ) {
        let width = width
        let eps = epsilon
        let wp = weight.pointer
        let layer = kind == .layer
        let body = { (i: Int) in
            let r0 = i * Self.chunk
            let count = min(Self.chunk, rows - r0)
            if layer {
                Backward.layerNorm(
                    x + r0 * width, rows: count, width: width, ldx: width, weight: wp, eps: eps,
                    dY: dY + r0 * width, ldDY: width, dX: dX + r0 * width, ldDX: width,
                    accumulate: accumulate, dWeight: dWeight?.pointer, dBias: nil)
            } else {
                Backward.rmsNorm(
                    x + r0 * width, rows: count, width: width, ldx: width, weight: wp, eps: eps,
                    dY: dY + r0 * width, ldDY: width, dX: dX + r0 * width, ldDX: width,
                    accumulate: accumulate, dWeight: dWeight?.pointer)
            }
        }
        let chunks = (rows + Self.chunk - 1) / Self.chunk
        if dWeight != nil {
            for i in 0..<chunks { body(i) }
        } else {
            parallelFor(chunks, body)
        }
    }
}

extension Normalization {
    init(_ config: TransformerConfig) { self.init(kind: config.normKind, width: config.hiddenSize, epsilon: config.normEpsilon) }
}
