import Foundation
import TensorCore
import Testing

/// The optimisers and norm clipping against PyTorch (``OptimizerReference``, written by
/// Scripts/golden/make_optimizer_reference.py), and on a quadratic they must minimise.
///
/// Both sides compute in float32 with the same operations in the same order, so they differ by
/// a few float32 roundings per step (PyTorch fuses some multiply-adds); the parameters after
/// every step must agree to 1e-6 relative to the largest value of their tensor (measured: at
/// most 1.7e-7, one or two ulp).
@Suite struct OptimizerTests {
    static let tolerance: Float = 1e-6

    func expectClose(
        _ actual: [Float], _ expected: [Float], _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(actual.count == expected.count, "\(what): sizes", sourceLocation: sourceLocation)
        let scale = expected.map(abs).max() ?? 0
        let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        #expect(
            error <= Self.tolerance * scale, "\(what): error \(error) for values up to \(scale)",
            sourceLocation: sourceLocation)
    }

    func referenceParameters() -> [Tensor] {
        zip(OptimizerReference.shapes, OptimizerReference.initial).map { Tensor(shape: $0, values: $1) }
    }

    /// The step's gradients as tensors (nil where PyTorch's `p.grad` is None).
    func referenceGradients(step: Int) -> [Tensor?] {
        zip(OptimizerReference.shapes, OptimizerReference.gradients[step]).map { shape, values in
            values.map { Tensor(shape: shape, values: $0) }
        }
    }

    @Test(arguments: OptimizerReference.adam)
    func adamMatchesPyTorch(_ reference: AdamCase) {
        let parameters = referenceParameters()
        let decay: WeightDecay =
            reference.weightDecay == 0
            ? .none
            : reference.decoupled ? .decoupled(reference.weightDecay) : .l2(reference.weightDecay)
        let adam = Adam(
            parameters: parameters, learningRate: reference.learningRate,
            betas: (reference.beta1, reference.beta2), eps: reference.eps, weightDecay: decay)
        for (step, expected) in reference.trajectory.enumerated() {
            adam.step(gradients: referenceGradients(step: step))
            for (index, parameter) in parameters.enumerated() {
                expectClose(parameter.scalars, expected[index], "\(reference.name) step \(step + 1) parameter \(index)")
            }
        }
        // B skipped step 3: its counter did not advance.
        #expect(adam.stepCount(of: 0) == reference.trajectory.count)
        #expect(adam.stepCount(of: 1) == reference.trajectory.count - 1)
    }

    @Test(arguments: OptimizerReference.sgd)
    func sgdMatchesPyTorch(_ reference: SGDCase) {
        let parameters = referenceParameters()
        let sgd = SGD(
            parameters: parameters, learningRate: reference.learningRate, momentum: reference.momentum,
            dampening: reference.dampening, weightDecay: reference.weightDecay, nesterov: reference.nesterov)
        for (step, expected) in reference.trajectory.enumerated() {
            sgd.step(gradients: referenceGradients(step: step))
            for (index, parameter) in parameters.enumerated() {
                expectClose(parameter.scalars, expected[index], "\(reference.name) step \(step + 1) parameter \(index)")
            }
        }
    }

    @Test func adamStepsOneParameterAlone() {
        // `step(_:gradient:)` is the per-parameter form of `step(gradients:)`.
        let together = referenceParameters()
        let alone = referenceParameters()
        let a = Adam(parameters: together, learningRate: 0.01)
        let b = Adam(parameters: alone, learningRate: 0.01)
        for step in 0..<OptimizerReference.gradients.count {
            let gradients = referenceGradients(step: step)
            a.step(gradients: gradients)
            for (index, gradient) in gradients.enumerated() {
                if let gradient { b.step(index, gradient: gradient.pointer) }
            }
        }
        for (x, y) in zip(together, alone) { #expect(x.scalars == y.scalars) }
        b.reset()
        #expect(b.stepCount(of: 0) == 0)
    }

    @Test(arguments: OptimizerReference.clipping)
    func clipGradientNormMatchesPyTorch(_ reference: ClipCase) {
        let gradients = referenceGradients(step: 0).compactMap { $0 }
        let total = NormClipping.clipGradientNorm(gradients, maxNorm: reference.maxNorm)
        #expect(abs(total - reference.totalNorm) <= Self.tolerance * reference.totalNorm)
        for (index, gradient) in gradients.enumerated() {
            expectClose(gradient.scalars, reference.clipped[index], "max norm \(reference.maxNorm), gradient \(index)")
        }
        let clippedNorm = Float(gradients.map { NormClipping.l2Norm($0) }.reduce(0) { $0 + $1 * $1 }.squareRoot())
        #expect(clippedNorm <= reference.maxNorm * (1 + Self.tolerance))
    }

    @Test(arguments: OptimizerReference.clamp)
    func clampNormMatchesRome(_ reference: ClampCase) {
        let delta = Tensor(shape: [OptimizerReference.initial[1].count], values: OptimizerReference.initial[1])
        let norm = NormClipping.clampNorm(delta, maxNorm: reference.maxNorm)
        #expect(abs(norm - reference.norm) <= Self.tolerance * reference.norm)
        expectClose(delta.scalars, reference.clamped, "clamp to \(reference.maxNorm)")
        #expect(Float(NormClipping.l2Norm(delta)) <= reference.maxNorm * (1 + Self.tolerance))
    }

    @Test func nonFiniteNormLeavesGradientsAlone() {
        let g = Tensor(shape: [3], values: [1, .infinity, 2])
        let total = NormClipping.clipGradientNorm([g], maxNorm: 1)
        #expect(total == .infinity)
        #expect(g[0] == 1 && g[2] == 2)
    }

    @Test func normsOfLargeTensorsAreAccurate() {
        // 100 000 equal values across several blocks: the norm is exact in Double.
        let n = 100_000
        let x = Tensor(shape: [n], values: Array(repeating: 0.1, count: n))
        let expected = (Double(n) * Double(Float(0.1)) * Double(Float(0.1))).squareRoot()
        #expect(abs(NormClipping.l2Norm(x) - expected) <= 1e-6 * expected)
    }

    /// `f(x) = ½ Σ a_i (x_i − t_i)²` over 300 coordinates (blocks and a tail), with curvatures
    /// `a_i` spread over 0.1…10 (condition number 100); the gradient is `a ⊙ (x − t)`. From
    /// f ≈ 2471, both optimisers must reach f < 1e-8 (measured: Adam 2e-11, SGD 3e-13; float32
    /// rounding of x alone leaves ~1e-11).
    func quadratic(_ x: Tensor, gradient: Tensor, curvature: [Float], target: [Float]) -> Double {
        var value = 0.0
        for i in 0..<x.count {
            let d = x[i] - target[i]
            gradient[i] = curvature[i] * d
            value += 0.5 * Double(curvature[i]) * Double(d) * Double(d)
        }
        return value
    }

    @Test func optimisersMinimiseAQuadratic() {
        let n = 300
        let curvature = (0..<n).map { Float(pow(10.0, Double($0 % 7) / 3 - 1)) }
        let target = (0..<n).map { Float(sin(Double($0))) * 2 }
        let start = (0..<n).map { Float(cos(Double($0) * 0.7)) * 3 }

        let adamX = Tensor(shape: [n], values: start)
        let adamGradient = Tensor(zeros: [n])
        let adam = Adam(parameters: [adamX], learningRate: 0.1, weightDecay: .none)
        let initial = quadratic(adamX, gradient: adamGradient, curvature: curvature, target: target)
        #expect(initial > 10)
        for step in 0..<1500 {
            // Step decay: Adam's steps stay ~lr near the minimum, so the rate must fall to settle.
            adam.learningRate = 0.1 * pow(0.5, Double(step / 250))
            _ = quadratic(adamX, gradient: adamGradient, curvature: curvature, target: target)
            adam.step(gradients: [adamGradient])
        }
        let adamFinal = quadratic(adamX, gradient: adamGradient, curvature: curvature, target: target)
        #expect(adamFinal < 1e-8, "Adam left f = \(adamFinal) from \(initial)")

        let sgdX = Tensor(shape: [n], values: start)
        let sgdGradient = Tensor(zeros: [n])
        let sgd = SGD(parameters: [sgdX], learningRate: 0.1, momentum: 0.9, nesterov: true)
        for _ in 0..<500 {
            _ = quadratic(sgdX, gradient: sgdGradient, curvature: curvature, target: target)
            sgd.step(gradients: [sgdGradient])
        }
        let sgdFinal = quadratic(sgdX, gradient: sgdGradient, curvature: curvature, target: target)
        #expect(sgdFinal < 1e-8, "SGD left f = \(sgdFinal) from \(initial)")
    }

    @Test func decoupledDecayShrinksWithoutAGradient() {
        // With a zero gradient AdamW only decays: θ·(1 − lr·λ)ᵗ; L2 decay moves θ by ~lr a step.
        let x = Tensor(shape: [20], values: (0..<20).map { Float($0) - 9.5 })
        let zero = Tensor(zeros: [20])
        let adamW = Adam(parameters: [x], learningRate: 0.01, weightDecay: .decoupled(0.5))
        for _ in 0..<10 { adamW.step(gradients: [zero]) }
        for i in 0..<20 {
            let expected = (Float(i) - 9.5) * Float(pow(1 - 0.01 * 0.5, 10.0))
            #expect(abs(x[i] - expected) <= 1e-6 * abs(expected))
        }
    }
}

/// One Adam run of the reference: hyperparameters and the parameters after each step.
struct AdamCase: Sendable, CustomTestStringConvertible {
    let name: String
    let learningRate, beta1, beta2, eps, weightDecay: Double
    let decoupled: Bool
    /// `trajectory[step][parameter]`: the parameter's values after that step.
    let trajectory: [[[Float]]]
    var testDescription: String { name }
}

/// One SGD run of the reference.
struct SGDCase: Sendable, CustomTestStringConvertible {
    let name: String
    let learningRate, momentum, dampening, weightDecay: Double
    let nesterov: Bool
    let trajectory: [[[Float]]]
    var testDescription: String { name }
}

/// `clip_grad_norm_` of step 1's gradients at `maxNorm`: the returned total and the gradients.
struct ClipCase: Sendable, CustomTestStringConvertible {
    let maxNorm, totalNorm: Float
    let clipped: [[Float]]
    var testDescription: String { "maxNorm \(maxNorm)" }
}

/// ROME's clamp of parameter B's initial values to `maxNorm`.
struct ClampCase: Sendable, CustomTestStringConvertible {
    let maxNorm, norm: Float
    let clamped: [Float]
    var testDescription: String { "maxNorm \(maxNorm)" }
}
