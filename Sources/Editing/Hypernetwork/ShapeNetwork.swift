import Foundation
import TensorCore

/// The editor network shared by every edited matrix of one shape `[out, in]` (IBKE.md §3.3):
/// it maps each token's normalised gradient pair `x = [ū; δ̄]` (`D = in + out` wide) to the
/// factors `y = [ũ; δ̃]` of that token's share of the update. Each module (matrix) has its own
/// FiLM scale and shift; everything else is shared.
///
/// Two designs:
/// - ``HypernetworkSettings/Design/mend``: MEND's two residual low-rank layers
///   (`x ← x + act(FiLM(A·(B·x) + b))`, ReLU then identity), `A` zero so that the network starts
///   as the identity (METHODS.md §5).
/// - ``HypernetworkSettings/Design/bottleneck`` (IBKE Design A, IBKE.md §3.4–3.5): an encoder to
///   a diagonal Gaussian per token (mean, log-variance), a sample `z = μ + σ ⊙ ε` while training
///   (`z = μ` when editing), and a decoder from `z` alone: nothing of `x` reaches the output
///   except through `z`. The decoder rows producing `δ̃` start at zero, those producing `ũ` at
///   random, so `ΔW = 0` at the start without a saddle.
final class ShapeNetwork: @unchecked Sendable {
    typealias Design = HypernetworkSettings.Design

    let design: Design
    let inWidth: Int
    let outWidth: Int
    let rank: Int
    let latentSize: Int
    let moduleCount: Int
    let bank: ParameterBank

    var width: Int { inWidth + outWidth }

    /// The parameter layout of a network (names are stable: they key editor files).
    static func layout(design: Design, width d: Int, rank r: Int, latent z: Int, modules m: Int) -> [(String, [Int])] {
        switch design {
        case .mend:
            return (0..<2).flatMap { i in
                [("layer\(i).down", [r, d]), ("layer\(i).up", [d, r]), ("layer\(i).bias", [d]),
                 ("layer\(i).scale", [m, d]), ("layer\(i).shift", [m, d])]
            }
        case .bottleneck:
            return [
                ("encoder.weight", [r, d]), ("encoder.bias", [r]), ("encoder.scale", [m, r]), ("encoder.shift", [m, r]),
                ("mean.weight", [z, r]), ("mean.bias", [z]), ("logvar.weight", [z, r]), ("logvar.bias", [z]),
                ("decoder.weight", [r, z]), ("decoder.bias", [r]), ("decoder.scale", [m, r]), ("decoder.shift", [m, r]),
                ("output.weight", [d, r]), ("output.bias", [d]),
            ]
        }
    }

    /// A freshly initialised network.
    convenience init(design: Design, inWidth: Int, outWidth: Int, rank: Int, latentSize: Int, modules: Int,
         initialLogVariance: Float, rng: inout SplitMix64) {
        self.init(design: design, inWidth: inWidth, outWidth: outWidth, rank: rank, latentSize: latentSize,
                  modules: modules)
        let d = width
        switch design {
        case .mend:
            for i in 0..<2 {
                bank.fillNormal("layer\(i).down", std: 1 / Float(d).squareRoot(), using: &rng)
                bank.fill("layer\(i).scale", 1)
            }
        case .bottleneck:
            bank.fillNormal("encoder.weight", std: (2 / Float(d)).squareRoot(), using: &rng)
            bank.fill("encoder.scale", 1)
            bank.fillNormal("mean.weight", std: 1 / Float(rank).squareRoot(), using: &rng)
            bank.fill("logvar.bias", initialLogVariance)
            bank.fillNormal("decoder.weight", std: (2 / Float(latentSize)).squareRoot(), using: &rng)
            bank.fill("decoder.scale", 1)
            // ũ rows random, δ̃ rows zero (LoRA-style: ΔW = 0 but ∂L/∂δ̃ ≠ 0).
            let output = bank["output.weight"], std = 1 / Float(rank).squareRoot()
            for i in 0..<(inWidth * rank) { output.pointer[i] = std * rng.nextGaussian() }
        }
    }

    /// A network with zero parameters, to be filled from a file.
    init(design: Design, inWidth: Int, outWidth: Int, rank: Int, latentSize: Int, modules: Int) {
        self.design = design
        self.inWidth = inWidth
        self.outWidth = outWidth
        self.rank = rank
        self.latentSize = latentSize
        moduleCount = modules
        bank = ParameterBank(Self.layout(design: design, width: inWidth + outWidth, rank: rank, latent: latentSize,
                                         modules: modules))
    }

    /// What one module's rows went through, kept for ``backward(_:outputGradient:klScale:into:)``.
    struct Pass {
        let module: Int
        /// `[T, D]`: the factors `[ũ; δ̃]` of each row.
        let output: Tensor
        /// Σ over rows and latent units of `KL(N(μ, σ²) ‖ N(0, 1))` (0 for MEND).
        let klSum: Double
        fileprivate let saved: [Tensor]
        /// The noise of the sample (bottleneck while training), `[T, d_z]`.
        fileprivate let noise: Tensor?
    }

    /// Runs module `module`'s normalised rows `x` (`[T, D]`) through the network; with `noise`
    /// the bottleneck samples `z` (training), without it uses `z = μ` (editing).
    func forward(_ x: Tensor, module m: Int, noise rng: UnsafeMutablePointer<SplitMix64>?) -> Pass {
        precondition(x.shape.count == 2 && x.shape[1] == width, "rows \(x.shape) for a network of width \(width)")
        precondition(m >= 0 && m < moduleCount, "module \(m) of \(moduleCount)")
        switch design {
        case .mend:
            var h = x, saved: [Tensor] = []
            for i in 0..<2 {
                let p = LayerMath.linear(h, bank["layer\(i).down"], nil)
                let q = LayerMath.linear(p, bank["layer\(i).up"], bank["layer\(i).bias"])
                let f = LayerMath.film(q, scale: bank["layer\(i).scale"], shift: bank["layer\(i).shift"], module: m)
                let a = i == 0 ? LayerMath.relu(f) : f
                let next = h.copy()
                Kernels.add(a.pointer, into: next.pointer, count: next.count)
                saved += [h, p, q, f]
                h = next
            }
            return Pass(module: m, output: h, klSum: 0, saved: saved, noise: nil)
        case .bottleneck:
            let a1 = LayerMath.linear(x, bank["encoder.weight"], bank["encoder.bias"])
            let f1 = LayerMath.film(a1, scale: bank["encoder.scale"], shift: bank["encoder.shift"], module: m)
            let h1 = LayerMath.relu(f1)
            let mu = LayerMath.linear(h1, bank["mean.weight"], bank["mean.bias"])
            let s = LayerMath.linear(h1, bank["logvar.weight"], bank["logvar.bias"])  // unclamped
            let z = mu.copy()
            var kl = 0.0
            var noise: Tensor?
            if let rng { noise = Tensor(zeros: mu.shape) }
            for i in 0..<mu.count {
                let logVariance = min(10, max(-10, s.pointer[i])), m = mu.pointer[i]
                let variance = exp(logVariance)
                kl += 0.5 * Double(m * m + variance - logVariance - 1)
                if let noise {
                    let e = rng!.pointee.nextGaussian()
                    noise.pointer[i] = e
                    z.pointer[i] += exp(logVariance / 2) * e
                }
            }
            let a2 = LayerMath.linear(z, bank["decoder.weight"], bank["decoder.bias"])
            let f2 = LayerMath.film(a2, scale: bank["decoder.scale"], shift: bank["decoder.shift"], module: m)
            let h2 = LayerMath.relu(f2)
            let y = LayerMath.linear(h2, bank["output.weight"], bank["output.bias"])
            return Pass(module: m, output: y, klSum: kl, saved: [x, a1, f1, h1, mu, s, z, a2, f2, h2], noise: noise)
        }
    }

    /// Adds to `gradient` (this bank's layout) the gradient of a loss whose gradient at the
    /// pass's output is `dY`, plus `klScale · ∂(klSum)/∂θ` (the ITM term; β / rows for the
    /// mean-per-row reduction).
    func backward(_ pass: Pass, outputGradient dY: Tensor, klScale: Float, into gradient: Tensor) {
        func g(_ name: String) -> Tensor { bank.view(name, in: gradient) }
        let m = pass.module
        switch design {
        case .mend:
            let dx = dY.copy()
            for i in [1, 0] {
                let h = pass.saved[4 * i], p = pass.saved[4 * i + 1], q = pass.saved[4 * i + 2], f = pass.saved[4 * i + 3]
                let df = dx.copy()
                if i == 0 { LayerMath.reluBackward(df, input: f) }
                let dq = LayerMath.filmBackward(df, input: q, scale: bank["layer\(i).scale"], module: m,
                                                dScale: g("layer\(i).scale"), dShift: g("layer\(i).shift"))
                let dp = LayerMath.linearBackward(dq, input: p, weight: bank["layer\(i).up"], dWeight: g("layer\(i).up"),
                                                  dBias: g("layer\(i).bias"), inputGradient: true)!
                let dh = LayerMath.linearBackward(dp, input: h, weight: bank["layer\(i).down"],
                                                  dWeight: g("layer\(i).down"), dBias: nil, inputGradient: i > 0)
                // The residual path: the layer input's gradient is dx + dh.
                if let dh { Kernels.add(dh.pointer, into: dx.pointer, count: dx.count) }
            }
        case .bottleneck:
            let s = pass.saved
            let (x, a1, f1, h1, mu, logVar, z, a2, f2, h2) = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9])
            let dh2 = LayerMath.linearBackward(dY, input: h2, weight: bank["output.weight"], dWeight: g("output.weight"),
                                               dBias: g("output.bias"), inputGradient: true)!
            LayerMath.reluBackward(dh2, input: f2)
            let da2 = LayerMath.filmBackward(dh2, input: a2, scale: bank["decoder.scale"], module: m,
                                             dScale: g("decoder.scale"), dShift: g("decoder.shift"))
            let dz = LayerMath.linearBackward(da2, input: z, weight: bank["decoder.weight"], dWeight: g("decoder.weight"),
                                              dBias: g("decoder.bias"), inputGradient: true)!
            // z = μ + exp(s/2)·ε; KL = ½ Σ (μ² + eˢ − s − 1), s clamped to [−10, 10].
            let dMu = Tensor(zeros: mu.shape), dS = Tensor(zeros: mu.shape)
            for i in 0..<mu.count {
                dMu.pointer[i] = dz.pointer[i] + klScale * mu.pointer[i]
                let raw = logVar.pointer[i]
                guard raw > -10 && raw < 10 else { continue }
                var ds = klScale * 0.5 * (exp(raw) - 1)
                if let noise = pass.noise { ds += dz.pointer[i] * 0.5 * noise.pointer[i] * exp(raw / 2) }
                dS.pointer[i] = ds
            }
            let dh1 = LayerMath.linearBackward(dMu, input: h1, weight: bank["mean.weight"], dWeight: g("mean.weight"),
                                               dBias: g("mean.bias"), inputGradient: true)!
            let dh1s = LayerMath.linearBackward(dS, input: h1, weight: bank["logvar.weight"], dWeight: g("logvar.weight"),
                                                dBias: g("logvar.bias"), inputGradient: true)!
            Kernels.add(dh1s.pointer, into: dh1.pointer, count: dh1.count)
            LayerMath.reluBackward(dh1, input: f1)
            let da1 = LayerMath.filmBackward(dh1, input: a1, scale: bank["encoder.scale"], module: m,
                                             dScale: g("encoder.scale"), dShift: g("encoder.shift"))
            LayerMath.linearBackward(da1, input: x, weight: bank["encoder.weight"], dWeight: g("encoder.weight"),
                                     dBias: g("encoder.bias"), inputGradient: false)
        }
    }
}
