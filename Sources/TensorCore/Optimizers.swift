import Foundation

// Optimisers the knowledge editors run (ROME's and MEMIT's v* search, FT, MEND's editor network),
// reproducing PyTorch's CPU update rules (`torch.optim.Adam`/`AdamW`/`SGD`, single-tensor path)
// operation by operation, so an edit ported from a Python reference takes the same steps.
//
// Conventions shared by ``Adam`` and ``SGD``:
// - An optimiser is built over a list of parameters (float32 ``Tensor``s, possibly views) that it
//   updates in place. A parameter's **index** in that list is its key: per-parameter state
//   (moments, step counter, momentum buffer) is stored under it, and `step(gradients:)` takes
//   one gradient per index. Views of the same storage must not overlap.
// - Hyperparameters are `Double`, as PyTorch's are Python floats: the per-step scalars
//   (`1 − β₂`, bias corrections, `lr · λ`) are computed in Double and rounded to Float once,
//   exactly as PyTorch rounds them when it applies them to float32 tensors. (`1 − β₂` computed
//   from a Float β₂ = 0.999 is off by 1.3e-5 relative.) `learningRate` may be changed between
//   steps (a schedule), as a param group's `lr` may.
// - A nil gradient skips its parameter for that step, like `p.grad is None`: the parameter, its
//   moments and its step counter are left unchanged. Gradients are only read.
// - State is created at a parameter's first step (zero moments; SGD's momentum buffer starts as
//   a copy of the first gradient), as PyTorch creates it lazily.
// - Elementwise updates run on the ``parallelFor(_:dynamic:_:)`` pool by blocks of
//   ``optimizerBlock`` floats; each element's result depends only on that element, so it does not
//   depend on the thread count.

/// Floats per parallel block of an optimiser update or a norm: 64 KiB of each stream, large
/// enough that a block's cost dwarfs scheduling it.
let optimizerBlock = 16_384

/// Runs `body(start, count)` over `0..<count` in blocks of ``optimizerBlock`` on the pool.
@inline(__always)
private func forEachBlock(_ count: Int, _ body: (Int, Int) -> Void) {
    parallelFor((count + optimizerBlock - 1) / optimizerBlock) { b in
        let start = b * optimizerBlock
        body(start, min(optimizerBlock, count - start))
    }
}

/// Weight decay of an ``Adam`` step, in either form users of ROME and MEND configure.
public enum WeightDecay: Sendable, Equatable {
    case none
    /// L2 regularisation: `λ·θ` is added to the gradient before it enters the moments
    /// (`torch.optim.Adam(weight_decay=λ)`; FT and MEND's configs mean this form). Adam's
    /// per-coordinate scaling then rescales the decay too.
    case l2(Double)
    /// Decoupled decay: `θ ← θ·(1 − lr·λ)` before the Adam update, outside the moments
    /// (`torch.optim.AdamW(weight_decay=λ)`; Loshchilov & Hutter).
    case decoupled(Double)
}

/// An optimiser over a fixed list of parameters, updated in place, each keyed by its position.
public protocol Optimizer: AnyObject {
    var parameters: [Tensor] { get }
    /// One step of parameter `index` alone, with a gradient of `parameters[index].count` floats.
    func step(_ index: Int, gradient: UnsafePointer<Float>)
}

extension Optimizer {
    /// One step: `gradients[i]` (same element count as `parameters[i]`) updates parameter `i`;
    /// nil skips it and leaves its state untouched. Like `optimizer.step()` after `backward()`.
    public func step(gradients: [Tensor?]) {
        precondition(
            gradients.count == parameters.count,
            "\(gradients.count) gradients for \(parameters.count) parameters")
        for (index, gradient) in gradients.enumerated() {
            guard let gradient else { continue }
            precondition(
                gradient.count == parameters[index].count,
                "gradient of \(gradient.shape) for parameter \(index) of \(parameters[index].shape)")
            step(index, gradient: UnsafePointer(gradient.pointer))
        }
    }
}

/// Adam (Kingma & Ba) with PyTorch's update, bias correction and both weight-decay forms.
///
/// For parameter `θ` with gradient `g` at its `t`-th step (`t` counted per parameter from 1):
/// ```
/// g ← g + λ·θ                          (WeightDecay.l2)
/// θ ← θ·(1 − lr·λ)                     (WeightDecay.decoupled)
/// m ← m + (1 − β₁)·(g − m)             (exp_avg.lerp_(g, 1 − β₁))
/// v ← β₂·v + (1 − β₂)·g²
/// θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)
/// ```
/// PyTorch stores `t` per parameter (`state['step']`); it equals the step count of the group
/// unless some parameter was skipped with a nil gradient. AMSGrad and `maximize` are not
/// supported (no editor uses them).
public final class Adam: Optimizer {
    /// The parameters, updated in place; a parameter's index here keys its state.
    public let parameters: [Tensor]
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let eps: Double
    public let weightDecay: WeightDecay

    /// Moments and step counter of one parameter.
    private struct State {
        let firstMoment: TensorStorage
        let secondMoment: TensorStorage
        var step: Int
    }

    private var states: [State?]

    /// An optimiser over `parameters` with PyTorch's defaults (`lr` 1e-3, betas (0.9, 0.999),
    /// eps 1e-8, no decay).
    public init(
        parameters: [Tensor], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
        eps: Double = 1e-8, weightDecay: WeightDecay = .none
    ) {
        precondition(learningRate >= 0, "invalid learning rate \(learningRate)")
        precondition((0..<1).contains(betas.0) && (0..<1).contains(betas.1), "invalid betas \(betas)")
        precondition(eps >= 0, "invalid eps \(eps)")
        switch weightDecay {
        case .none: break
        case .l2(let λ), .decoupled(let λ): precondition(λ >= 0, "invalid weight decay \(λ)")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = betas.0
        self.beta2 = betas.1
        self.eps = eps
        self.weightDecay = weightDecay
        states = Array(repeating: nil, count: parameters.count)
    }

    /// Steps taken by parameter `index` (0 before its first gradient).
    public func stepCount(of index: Int) -> Int { states[index]?.step ?? 0 }

    /// Parameter `index`'s moments and step count (nil before its first step), for checkpoints.
    public func state(of index: Int) -> (firstMoment: [Float], secondMoment: [Float], step: Int)? {
        guard let s = states[index] else { return nil }
        let count = parameters[index].count
        return (
            Array(UnsafeBufferPointer(start: s.firstMoment.pointer, count: count)),
            Array(UnsafeBufferPointer(start: s.secondMoment.pointer, count: count)), s.step
        )
    }

    /// Restores parameter `index`'s moments and step count from a checkpoint (``state(of:)``).
    public func restoreState(of index: Int, firstMoment: [Float], secondMoment: [Float], step: Int) {
        let count = parameters[index].count
        precondition(firstMoment.count == count && secondMoment.count == count && step >= 1, "state of the wrong size")
        let m = TensorStorage(count: count)
        let v = TensorStorage(count: count)
        m.pointer.update(from: firstMoment, count: count)
        v.pointer.update(from: secondMoment, count: count)
        states[index] = State(firstMoment: m, secondMoment: v, step: step)
    }

    /// Forgets all moments and step counters (the next step is a first step again).
    public func reset() { states = Array(repeating: nil, count: parameters.count) }

    /// One step of parameter `index` alone, with a gradient of `parameters[index].count` floats.
    public func step(_ index: Int, gradient: UnsafePointer<Float>) {
        let parameter = parameters[index]
        let count = parameter.count
        var state =
            states[index]
            ?? State(
                firstMoment: TensorStorage(count: count),
                secondMoment: TensorStorage(count: count), step: 0)
        state.step += 1
        states[index] = state

        // The scalars PyTorch computes in Python (Double) and rounds once to Float.
        let t = Double(state.step)
        let biasCorrection1 = 1 - pow(beta1, t)
        let biasCorrection2 = 1 - pow(beta2, t)
        let negativeStepSize = Float(-(learningRate / biasCorrection1))
        let biasCorrection2Root = Float(biasCorrection2.squareRoot())
        let oneMinusBeta1 = Float(1 - beta1)
        let beta2 = Float(self.beta2)
        let oneMinusBeta2 = Float(1 - self.beta2)
        let eps = Float(self.eps)
        var l2: Float = 0
        var decayFactor: Float = 1
        switch weightDecay {
        case .none: break
        case .l2(let λ): l2 = Float(λ)
        case .decoupled(let λ): decayFactor = Float(1 - learningRate * λ)
        }

        let theta = parameter.pointer
        let m = state.firstMoment.pointer
        let v = state.secondMoment.pointer
        forEachBlock(count) { start, blockCount in
            for i in stride(from: start, to: start + blockCount, by: 16) {
                let c = min(16, start + blockCount - i)
                var p = loadSIMD(theta + i, c)
                var g = loadSIMD(gradient + i, c)
                if l2 != 0 { g = g + p * l2 }
                if decayFactor != 1 { p = p * decayFactor }
                let m0 = loadSIMD(m + i, c)
                let m1 = m0 + (g - m0) * oneMinusBeta1
                let v1 = loadSIMD(v + i, c) * beta2 + g * oneMinusBeta2 * g
                let denominator = v1.squareRoot() / biasCorrection2Root + eps
                storeSIMD(m1, m + i, c, accumulate: false)
                storeSIMD(v1, v + i, c, accumulate: false)
                storeSIMD(p + m1 * negativeStepSize / denominator, theta + i, c, accumulate: false)
            }
        }
    }
}

/// Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and (L2) weight
/// decay (`torch.optim.SGD`):
/// ```
/// g ← g + λ·θ
/// b ← g (first step)  or  b ← μ·b + (1 − dampening)·g      (when μ ≠ 0)
/// g ← g + μ·b (Nesterov)  or  g ← b                         (when μ ≠ 0)
/// θ ← θ − lr·g
/// ```
public final class SGD: Optimizer {
    /// The parameters, updated in place; a parameter's index here keys its momentum buffer.
    public let parameters: [Tensor]
    public var learningRate: Double
    public let momentum: Double
    public let dampening: Double
    public let weightDecay: Double
    public let nesterov: Bool

    private var buffers: [TensorStorage?]

    /// PyTorch's constraints: Nesterov needs momentum and no dampening.
    public init(
        parameters: [Tensor], learningRate: Double, momentum: Double = 0, dampening: Double = 0,
        weightDecay: Double = 0, nesterov: Bool = false
    ) {
        precondition(learningRate >= 0, "invalid learning rate \(learningRate)")
        precondition(momentum >= 0, "invalid momentum \(momentum)")
        precondition(weightDecay >= 0, "invalid weight decay \(weightDecay)")
        precondition(
            !nesterov || (momentum > 0 && dampening == 0),
            "Nesterov momentum requires a momentum and zero dampening")
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        buffers = Array(repeating: nil, count: parameters.count)
    }

    /// Forgets the momentum buffers.
    public func reset() { buffers = Array(repeating: nil, count: parameters.count) }

    /// One step of parameter `index` alone, with a gradient of `parameters[index].count` floats.
    public func step(_ index: Int, gradient: UnsafePointer<Float>) {
        let parameter = parameters[index]
        let count = parameter.count
        let negativeLearningRate = Float(-learningRate)
        let decay = Float(weightDecay)
        let mu = Float(momentum)
        let oneMinusDampening = Float(1 - dampening)
        // PyTorch's first momentum step copies the gradient into the buffer, undampened.
        let first = momentum != 0 && buffers[index] == nil
        if momentum != 0 && first { buffers[index] = TensorStorage(count: count, zeroed: false) }
        let buffer = buffers[index]?.pointer
        let nesterov = self.nesterov

        let theta = parameter.pointer
        forEachBlock(count) { start, blockCount in
            for i in stride(from: start, to: start + blockCount, by: 16) {
                let c = min(16, start + blockCount - i)
                let p = loadSIMD(theta + i, c)
                var g = loadSIMD(gradient + i, c)
                if decay != 0 { g = g + p * decay }
                if let buffer {
                    let b = first ? g : loadSIMD(buffer + i, c) * mu + g * oneMinusDampening
                    storeSIMD(b, buffer + i, c, accumulate: false)
                    g = nesterov ? g + b * mu : b
                }
                storeSIMD(p + g * negativeLearningRate, theta + i, c, accumulate: false)
            }
        }
    }
}

/// Norm clipping: PyTorch's `clip_grad_norm_` over a set of gradients, and ROME's clamp of a
/// vector's norm.
public enum NormClipping {
    /// The L2 norm of `count` floats, accumulated in Double over blocks summed in order (the
    /// same for any thread count).
    public static func l2Norm(_ x: UnsafePointer<Float>, count: Int) -> Double {
        sumOfSquares(x, count: count).squareRoot()
    }

    /// The L2 norm of a tensor's elements.
    public static func l2Norm(_ x: Tensor) -> Double { l2Norm(x.pointer, count: x.count) }

    /// `Σ x_i²`, per block in Float lanes (16 × 1024 floats: short enough that float32 partial
    /// sums stay accurate to ~1e-6), the blocks added in Double.
    static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        let blocks = (count + optimizerBlock - 1) / optimizerBlock
        let partials = UnsafeMutablePointer<Double>.allocate(capacity: max(blocks, 1))
        defer { partials.deallocate() }
        forEachBlock(count) { start, blockCount in
            var total = 0.0
            for run in stride(from: start, to: start + blockCount, by: 1024) {
                var lanes = SIMD16<Float>()
                for i in stride(from: run, to: min(run + 1024, start + blockCount), by: 16) {
                    let v = loadSIMD(x + i, min(16, start + blockCount - i))
                    lanes += v * v
                }
                total += Double(lanes.sum())
            }
            partials[start / optimizerBlock] = total
        }
        return (0..<blocks).reduce(0.0) { $0 + partials[$1] }
    }

    /// Scales `gradients` in place so that their global L2 norm (the norm of all their elements
    /// together) is at most about `maxNorm`, and returns the norm before clipping
    /// (`torch.nn.utils.clip_grad_norm_(…, max_norm, norm_type=2)`).
    ///
    /// As in PyTorch the factor is `maxNorm / (total + 1e-6)` (in Float), applied only when it is
    /// below 1, so the clipped norm lands just under `maxNorm`. One difference: when the total is
    /// infinite or NaN the gradients are left as they are (PyTorch would multiply them by 0 or
    /// NaN); the returned norm tells the caller to skip the step.
    @discardableResult
    public static func clipGradientNorm(_ gradients: [Tensor], maxNorm: Float) -> Float {
        precondition(maxNorm >= 0, "invalid max norm \(maxNorm)")
        let total = Float(gradients.reduce(0.0) { $0 + sumOfSquares($1.pointer, count: $1.count) }.squareRoot())
        guard total.isFinite else { return total }
        let coefficient = maxNorm / (total + 1e-6)
        if coefficient < 1 {
            for gradient in gradients { scale(gradient.pointer, count: gradient.count, by: coefficient) }
        }
        return total
    }

    /// Rescales `count` floats in place to L2 norm `maxNorm` when their norm exceeds it, and
    /// returns the norm before clamping. ROME bounds its v* delta this way, with `maxNorm =
    /// clamp_norm_factor · ‖original value‖` (`delta * max_norm / delta.norm()` when
    /// `delta.norm() > max_norm`).
    @discardableResult
    public static func clampNorm(_ x: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
        precondition(maxNorm >= 0, "invalid max norm \(maxNorm)")
        let norm = Float(l2Norm(x, count: count))
        if norm > maxNorm { scale(x, count: count, by: maxNorm / norm) }
        return norm
    }

    /// ``clampNorm(_:count:maxNorm:)`` on a tensor's elements.
    @discardableResult
    public static func clampNorm(_ x: Tensor, maxNorm: Float) -> Float {
        clampNorm(x.pointer, count: x.count, maxNorm: maxNorm)
    }

    /// `x ← a·x` over `count` floats.
    public static func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by a: Float) {
        forEachBlock(count) { start, blockCount in
            for i in stride(from: start, to: start + blockCount, by: 16) {
                let c = min(16, start + blockCount - i)
                storeSIMD(loadSIMD(x + i, c) * a, x + i, c, accumulate: false)
            }
        }
    }
}
