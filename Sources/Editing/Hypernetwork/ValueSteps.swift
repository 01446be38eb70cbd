import Foundation
import Models
import TensorCore

/// IBKE's learned value steps (Docs/ibke.md, "Learned value steps"): an optimiser of the value
/// δ that MEMIT's closed-form write then stores at the subject's key, learned so that a few
/// gradient reads reach what Adam reaches in 25.
///
/// - φ₁ encodes the first read (the normalised gradient of the value loss at δ = 0) into a
///   stochastic latent `z` (mean and log σ, `latent` wide); its KL to N(0, I) is the
///   compression term (ITM).
/// - φ₂ is one small network applied to every coordinate of δ alike (learned optimisers
///   of Andrychowicz et al. 2016): from the coordinate's normalised gradient, its momentum,
///   δ and v₀, the read's loss and gradient norm, and `z`, it gives a bounded step, scaled by a
///   learned per-coordinate and per-read size. A skip term starts it as sign-like descent.
/// - Trained (``ValueStepObjective``) on the value loss after every step and on the
///   paraphrase's NLL at the final δ (SG); the locality KL of the "{subject} is a" prompt is
///   part of the value loss (IL), and the closed-form write keeps the preserved keys.
public final class ValueStepNetwork: @unchecked Sendable {
    public struct Settings: Sendable, Equatable {
        /// Gradient reads, one step after each, per edit.
        public var reads = 4
        public var hidden = 32
        public var latent = 8
        public init(reads: Int = 4, hidden: Int = 32, latent: Int = 8) {
            self.reads = reads
            self.hidden = hidden
            self.latent = latent
        }
    }

    /// Per-coordinate inputs: ĝ, its momentum, δ and v₀ (each over the coordinates' RMS), |ĝ|.
    static let featureCount = 5
    /// Per-read inputs shared by every coordinate: the loss and log(‖g‖ / ‖g₀‖).
    static let globalCount = 2

    public let settings: Settings
    /// δ's width (the residual stream's).
    public let width: Int
    public let bank: ParameterBank

    /// A freshly initialised network (`seed`), or zeros to be loaded.
    public init(settings: Settings, width: Int, seed: UInt64? = 0) {
        self.settings = settings
        self.width = width
        let (r, h, k) = (settings.latent, settings.hidden, settings.reads)
        bank = ParameterBank([
            ("encoder_mean", [r, width]), ("encoder_log_sigma", [r, width]), ("encoder_log_sigma_bias", [r]),
            ("w1", [h, Self.featureCount]), ("w_global", [h, Self.globalCount]), ("w_latent", [h, r]), ("b1", [k, h]),
            ("w2", [h]), ("skip", [1]), ("b2", [1]), ("coordinate_scale", [width]), ("step_scale", [k]),
        ])
        guard let seed else { return }
        var rng = SplitMix64(seed: seed)
        bank.fillNormal("encoder_mean", std: 0.1, using: &rng)
        bank.fillNormal("w1", std: 0.5, using: &rng)
        bank.fillNormal("w2", std: 0.1, using: &rng)
        bank.fillNormal("w_latent", std: 0.1, using: &rng)
        // tanh(4 · ĝ/4): sign-like descent, as Adam's first steps are.
        bank.fill("skip", 4)
        // Step sizes of half the coordinates' RMS, shrinking by read, as the line search chose
        // (Docs/ibke.md, "One gradient read cannot write the value").
        let scales = bank["step_scale"]
        for j in 0..<k { scales.pointer[j] = log(0.5) - 0.4 * Float(j) }
    }

    /// A stepper for one ``ValueOptimization`` run; `noise` samples z (training), otherwise z is
    /// the mean.
    func stepper(noise: SplitMix64? = nil) -> ValueStepRun { ValueStepRun(network: self, noise: noise) }

    fileprivate func parameter(_ name: String) -> UnsafeMutablePointer<Float> { bank[name].pointer }
}

/// One request's path through the reads: what the backward pass needs.
final class ValueTrajectory {
    struct Step {
        var features: [Float]  // [width, featureCount]
        var globals: [Float]
        var hidden: [Float]  // [width, hidden]
        var output: [Float]  // tanh, [width]
        var size: [Float]  // per coordinate, [width]
        var step: [Float]  // δ ← δ − step
    }
    var normalizedFirst: [Float] = []
    var mean: [Float] = []
    var logSigma: [Float] = []
    var noise: [Float] = []
    var z: [Float] = []
    var momentum: [Float] = []
    var firstNorm: Float = 0
    var steps: [Step] = []
    /// Every read: the loss at δ and its gradient.
    var reads: [(loss: Float, gradient: [Float])] = []
    /// δ after the last step.
    var delta: [Float] = []
}

final class ValueStepRun: ValueStepper {
    let network: ValueStepNetwork
    var noise: SplitMix64?
    var trajectories: [Int: ValueTrajectory] = [:]

    init(network: ValueStepNetwork, noise: SplitMix64?) {
        self.network = network
        self.noise = noise
    }

    func read(request: Int, step: Int, loss: Float, gradient: [Float], delta: Tensor, initial: [Float]) throws {
        let t = trajectories[request] ?? ValueTrajectory()
        trajectories[request] = t
        t.reads.append((loss, gradient))
        let n = network
        let d = n.width
        guard step < n.settings.reads else {
            t.delta = delta.scalars
            return
        }
        let gNorm = Float(NormClipping.l2Norm(gradient, count: d))
        guard gNorm > 0, gNorm.isFinite else {
            throw EditorError.notFinite(method: "ibke", detail: "the value gradient of read \(step)")
        }
        let root = Float(d).squareRoot()
        let g = gradient.map { $0 * root / gNorm }
        if step == 0 { encode(g, norm: gNorm, into: t) }
        t.momentum = t.momentum.isEmpty ? g.map { 0.5 * $0 } : zip(t.momentum, g).map { 0.5 * $0 + 0.5 * $1 }
        let rms = max(Float(NormClipping.l2Norm(initial, count: d)) / root, 1e-6)
        func clip(_ x: Float) -> Float { max(-3, min(3, x)) }
        let (f, h) = (ValueStepNetwork.featureCount, n.settings.hidden)
        var features = [Float](repeating: 0, count: d * f)
        let current = delta.scalars
        for i in 0..<d {
            let first = clip(g[i] / 4)
            features[i * f] = first
            features[i * f + 1] = clip(t.momentum[i] / 4)
            features[i * f + 2] = clip(current[i] / rms / 4)
            features[i * f + 3] = clip(initial[i] / rms / 4)
            features[i * f + 4] = abs(first)
        }
        let globals = [loss / 5, log(gNorm / t.firstNorm)]
        // The bias every coordinate shares: this read's, the globals', the latent's.
        let w1 = n.parameter("w1")
        let wGlobal = n.parameter("w_global")
        let wLatent = n.parameter("w_latent")
        let b1 = n.parameter("b1") + step * h
        var shared = [Float](repeating: 0, count: h)
        for j in 0..<h {
            var s = b1[j]
            for q in 0..<ValueStepNetwork.globalCount { s += wGlobal[j * ValueStepNetwork.globalCount + q] * globals[q] }
            for q in 0..<n.settings.latent { s += wLatent[j * n.settings.latent + q] * t.z[q] }
            shared[j] = s
        }
        let w2 = n.parameter("w2")
        let skip = n.parameter("skip")[0]
        let b2 = n.parameter("b2")[0]
        let coordinateScale = n.parameter("coordinate_scale")
        let stepScale = n.parameter("step_scale")[step]
        var hidden = [Float](repeating: 0, count: d * h)
        var output = [Float](repeating: 0, count: d)
        var size = [Float](repeating: 0, count: d)
        var change = [Float](repeating: 0, count: d)
        for i in 0..<d {
            var u = b2 + skip * features[i * f]
            for j in 0..<h {
                var s = shared[j]
                for q in 0..<f { s += w1[j * f + q] * features[i * f + q] }
                let a = tanh(s)
                hidden[i * h + j] = a
                u += w2[j] * a
            }
            output[i] = tanh(u)
            size[i] = rms * exp(coordinateScale[i] + stepScale)
            change[i] = size[i] * output[i]
            delta.pointer[i] -= change[i]
        }
        guard change.allSatisfy(\.isFinite) else { throw EditorError.notFinite(method: "ibke", detail: "the value step of read \(step)") }
        t.steps.append(.init(features: features, globals: globals, hidden: hidden, output: output, size: size, step: change))
    }

    /// φ₁: z from the first read's normalised gradient.
    private func encode(_ g: [Float], norm: Float, into t: ValueTrajectory) {
        let n = network
        let (d, r) = (n.width, n.settings.latent)
        let root = Float(d).squareRoot()
        let eMean = n.parameter("encoder_mean")
        let eSigma = n.parameter("encoder_log_sigma")
        let bSigma = n.parameter("encoder_log_sigma_bias")
        t.normalizedFirst = g
        t.firstNorm = norm
        t.mean = (0..<r).map { q in (0..<d).reduce(Float(0)) { $0 + eMean[q * d + $1] * g[$1] } / root }
        t.logSigma = (0..<r).map { q in (0..<d).reduce(bSigma[q]) { $0 + eSigma[q * d + $1] * g[$1] / root } }
        t.noise = (0..<r).map { _ in noise == nil ? 0 : noise!.nextGaussian() }
        t.z = (0..<r).map { t.mean[$0] + exp(t.logSigma[$0]) * t.noise[$0] }
    }
}

extension ValueStepNetwork {
    /// The latent's KL to N(0, I) for a trajectory.
    static func divergence(_ t: ValueTrajectory) -> Float {
        zip(t.mean, t.logSigma).reduce(Float(0)) { $0 + 0.5 * ($1.0 * $1.0 + exp(2 * $1.1) - 1 - 2 * $1.1) }
    }

    /// Adds to `gradient` (this bank's layout) the gradient of a loss whose derivative with
    /// respect to step `k`'s change is `upstream[k]`, plus `beta` × the latent's KL. The reads
    /// are held fixed (a first-order learned optimiser: no gradient flows through the model's
    /// response to earlier steps).
    func backward(_ t: ValueTrajectory, upstream: [[Float]], beta: Float, into gradient: Tensor) {
        let (d, f, h, r) = (width, Self.featureCount, settings.hidden, settings.latent)
        func grad(_ name: String) -> UnsafeMutablePointer<Float> { bank.view(name, in: gradient).pointer }
        let (gW1, gGlobal, gLatent, gB1) = (grad("w1"), grad("w_global"), grad("w_latent"), grad("b1"))
        let (gW2, gSkip, gB2) = (grad("w2"), grad("skip"), grad("b2"))
        let (gCoordinate, gStep) = (grad("coordinate_scale"), grad("step_scale"))
        let w2 = parameter("w2")
        let wLatent = parameter("w_latent")
        var dz = [Float](repeating: 0, count: r)
        for (k, step) in t.steps.enumerated() {
            let u = upstream[k]
            var dShared = [Float](repeating: 0, count: h)
            for i in 0..<d {
                let dChange = u[i]
                let scaled = dChange * step.step[i]
                gCoordinate[i] += scaled
                gStep[k] += scaled
                let o = step.output[i]
                let du = dChange * step.size[i] * (1 - o * o)
                gSkip[0] += du * step.features[i * f]
                gB2[0] += du
                for j in 0..<h {
                    let a = step.hidden[i * h + j]
                    gW2[j] += du * a
                    let dPre = du * w2[j] * (1 - a * a)
                    dShared[j] += dPre
                    for q in 0..<f { gW1[j * f + q] += dPre * step.features[i * f + q] }
                }
            }
            for j in 0..<h {
                gB1[k * h + j] += dShared[j]
                for q in 0..<Self.globalCount { gGlobal[j * Self.globalCount + q] += dShared[j] * step.globals[q] }
                for q in 0..<r {
                    gLatent[j * r + q] += dShared[j] * t.z[q]
                    dz[q] += dShared[j] * wLatent[j * r + q]
                }
            }
        }
        guard !t.mean.isEmpty else { return }
        let (gMean, gSigma, gSigmaBias) = (grad("encoder_mean"), grad("encoder_log_sigma"), grad("encoder_log_sigma_bias"))
        let root = Float(d).squareRoot()
        for q in 0..<r {
            let sigma = exp(t.logSigma[q])
            let dMean = dz[q] + beta * t.mean[q]
            let dLogSigma = dz[q] * t.noise[q] * sigma + beta * (sigma * sigma - 1)
            gSigmaBias[q] += dLogSigma
            for i in 0..<d {
                gMean[q * d + i] += dMean * t.normalizedFirst[i] / root
                gSigma[q * d + i] += dLogSigma * t.normalizedFirst[i] / root
            }
        }
    }
}
