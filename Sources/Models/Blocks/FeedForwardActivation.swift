import TensorCore

/// The MLP's nonlinearity between `ffn_in` and `ffn_down`, with its gradient beside it: the
/// forward pass and the tape's backward both call this, so a new variant is one new case here.
///
/// Each row of `ffn_in`'s output holds `[gate | up]` (`2F` floats) for a gated variant, or `up`
/// alone (`F`); the forward writes the `F` hidden values over the row's first `F` floats.
struct FeedForwardActivation: Sendable {
    let kind: TransformerConfig.FeedForwardKind
    /// `F`, the hidden width (`ffn_down`'s input).
    let size: Int

    /// Floats per row of `ffn_in`'s output.
    var inputWidth: Int { kind.isGated ? 2 * size : size }

    /// The hidden values of one row, in place.
    func forward(_ row: UnsafeMutablePointer<Float>) {
        switch kind {
        case .swiglu:
            Kernels.swiglu(gate: row, up: row + size, count: size, into: row)
        case .geluTanh:
            Kernels.geluTanh(row, count: size)
        case .gegluTanh:
            Kernels.geluTanh(row, count: size)
            for i in 0..<size { row[i] *= row[size + i] }
        }
    }

    /// `∂L/∂(ffn_in output)` of one row from its pre-activation (as `ffn_in` wrote it) and
    /// `∂L/∂hidden`.
    func backward(pre: UnsafePointer<Float>, dHidden: UnsafePointer<Float>, into dPre: UnsafeMutablePointer<Float>) {
        switch kind {
        case .swiglu:
            Backward.swiglu(gate: pre, up: pre + size, count: size, dOut: dHidden, dGate: dPre, dUp: dPre + size)
        case .geluTanh:
            Backward.geluTanh(pre, count: size, dY: dHidden, into: dPre)
        case .gegluTanh:
            // hidden = gelu(gate) ⊙ up: ∂up = ∂hidden ⊙ gelu(gate), ∂gate = gelu'(gate) ⊙ ∂hidden ⊙ up.
            let dUp = dPre + size
            dUp.update(from: pre, count: size)
            Kernels.geluTanh(dUp, count: size)
            for i in 0..<size {
                dUp[i] *= dHidden[i]
                dPre[i] = dHidden[i] * pre[size + i]
            }
            Backward.geluTanh(pre, count: size, dY: dPre, into: dPre)
        }
    }
}

extension FeedForwardActivation {
    init(_ config: TransformerConfig) { self.init(kind: config.feedForward, size: config.feedForwardSize) }
}

extension TransformerConfig.FeedForwardKind {
    /// Whether `ffn_in` has a gate half (`ffn_gate` and `ffn_up`).
    public var isGated: Bool {
        switch self {
        case .swiglu, .gegluTanh: true
        case .geluTanh: false
        }
    }
}
