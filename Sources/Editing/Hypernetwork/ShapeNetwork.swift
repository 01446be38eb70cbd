import Foundation
import TensorCore

/// The editor network shared by every edited matrix of one shape `[out, in]` (IBKE.md §3.3):
/// it maps each token's normalised gradient pair `x = [ū; δ̄]` (`D = in + out` wide) to the
/// factors `y = [ũ; δ̃]` of that token's share of the update. Each module (matrix) has its own
/// FiLM scale and shift; everything else is shared.
///
/// Three designs:
/// - ``HypernetworkSettings/Design/mend``: MEND's two residual low-rank layers
///   (`x ← x + act(FiLM(A·(B·x) + b))`, ReLU then identity), `A` zero so that the network starts
///   as the identity (METHODS.md §5).
/// - ``HypernetworkSettings/Design/bottleneck`` (IBKE Design A, IBKE.md §3.4–3.5): an encoder to
///   a diagonal Gaussian per token (mean, log-variance), a sample `z = μ + σ ⊙ ε` while training
///   (`z = μ` when editing), and a decoder from `z` alone: nothing of `x` reaches the output
///   except through `z`. The decoder rows producing `δ̃` start at zero, those producing `ũ` at
///   random, so `ΔW = 0` at the start without a saddle.
/// - ``HypernetworkSettings/Design/gated`` (IBKE Design C, IBKE.md §3.8): the encoder's rows
///   of every module of the shape are pooled by attention (`a_t = softmax_t(wᵀh_t)`, a project
///   simplification of `wᵀ tanh(A x_t)`) into one Gaussian latent per edit and shape, which gates
///   the normalised gradient: `y_t = [ū_t ⊙ σ(B_u z + g_u); δ̄_t ⊙ σ(B_δ z + g_δ)]`. The gates start
///   near 0.95, so the design starts as MEND at its identity; the raw gradient bypasses `z`.
/// - ``HypernetworkSettings/Design/gatedMEND`` (this project's Design C on MEND, Docs/ibke.md):
///   the same pooled latent and gates, applied to MEND's per-token residual output instead of
///   the raw normalised gradient: `y_t = MEND(x_t) ⊙ σ(B z + g)`.
final class ShapeNetwork: Sendable {
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
        let residual: [(String, [Int])] = (0..<2).flatMap { i in
            [
                ("layer\(i).down", [r, d]), ("layer\(i).up", [d, r]), ("layer\(i).bias", [d]),
                ("layer\(i).scale", [m, d]), ("layer\(i).shift", [m, d]),
            ]
        }
        let pooledGate: [(String, [Int])] = [
            ("encoder.weight", [r, d]), ("encoder.bias", [r]), ("encoder.scale", [m, r]), ("encoder.shift", [m, r]),
            ("attention.weight", [r]),
            ("mean.weight", [z, r]), ("mean.bias", [z]), ("logvar.weight", [z, r]), ("logvar.bias", [z]),
            ("gate.weight", [d, z]), ("gate.bias", [d]),
        ]
        switch design {
        case .mend: return residual
        case .gated: return pooledGate
        case .gatedMEND: return residual + pooledGate
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
    convenience init(
        design: Design, inWidth: Int, outWidth: Int, rank: Int, latentSize: Int, modules: Int,
        initialLogVariance: Float, rng: inout SplitMix64
    ) {
        self.init(
            design: design, inWidth: inWidth, outWidth: outWidth, rank: rank, latentSize: latentSize,
            modules: modules)
        let d = width
        if design == .mend || design == .gatedMEND {
            for i in 0..<2 {
                bank.fillNormal("layer\(i).down", std: 1 / Float(d).squareRoot(), using: &rng)
                bank.fill("layer\(i).scale", 1)
            }
        }
        if design != .mend {  // the encoder and Gaussian heads of every latent design
            bank.fillNormal("encoder.weight", std: (2 / Float(d)).squareRoot(), using: &rng)
            bank.fill("encoder.scale", 1)
            bank.fillNormal("mean.weight", std: 1 / Float(rank).squareRoot(), using: &rng)
            bank.fill("logvar.bias", initialLogVariance)
        }
        if design == .gated || design == .gatedMEND {
            bank.fillNormal("gate.weight", std: 0.1 / Float(latentSize).squareRoot(), using: &rng)
            bank.fill("gate.bias", 3)  // gates ≈ 0.95
        }
        if design == .bottleneck {
            bank.fillNormal("decoder.weight", std: (2 / Float(latentSize)).squareRoot(), using: &rng)
            bank.fill("decoder.scale", 1)
            // ũ rows random, δ̃ rows zero (LoRA-style: ΔW = 0 but ∂L/∂δ̃ ≠ 0).
            let output = bank["output.weight"]
            let std = 1 / Float(rank).squareRoot()
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
        bank = ParameterBank(
            Self.layout(
                design: design, width: inWidth + outWidth, rank: rank, latent: latentSize,
                modules: modules))
    }

    /// What the rows of the shape's modules went through, kept for ``backward(_:outputGradients:klScale:into:)``.
    struct Pass {
        /// Per module slot (nil for a module with no rows): `[T, D]`, the factors `[ũ; δ̃]` of each row.
        var outputs: [Tensor?]
        /// Σ over latent vectors and units of `KL(N(μ, σ²) ‖ N(0, 1))` (0 for MEND).
        let klSum: Double
        /// How many latent vectors the KL sums over (rows for the bottleneck, 1 for the gated designs, 0 for MEND).
        let latentCount: Int
        /// Per module slot: the encoder's (or the bottleneck's) intermediates.
        fileprivate var saved: [[Tensor]] = []
        /// Per module slot: MEND's residual layers' intermediates and their output.
        fileprivate var residual: [[Tensor]] = []
        /// The pooled latent and its gates (gated designs).
        fileprivate var shared: [Tensor] = []
        /// The latent samples' noise ε (training): per module slot for the bottleneck, one for gated.
        fileprivate var noise: [Tensor?] = []
    }

    /// Runs each module slot's normalised rows `[T, D]` (nil: the module has no rows) through the
    /// network; with `noise` the latent is sampled (training), without it `z = μ` (editing).
    func forward(_ inputs: [Tensor?], noise rng: UnsafeMutablePointer<SplitMix64>?) -> Pass {
        precondition(inputs.count == moduleCount, "\(inputs.count) inputs for \(moduleCount) modules")
        for x in inputs.compactMap({ $0 }) {
            precondition(x.shape.count == 2 && x.shape[1] == width, "rows \(x.shape) for a network of width \(width)")
        }
        switch design {
        case .mend:
            let residual = inputs.enumerated().map { m, x in x.map { residualForward($0, module: m) } ?? [] }
            return Pass(outputs: residual.map(\.last), klSum: 0, latentCount: 0, residual: residual)
        case .bottleneck:
            var outputs: [Tensor?] = []
            var saved: [[Tensor]] = []
            var noises: [Tensor?] = []
            var kl = 0.0
            var rows = 0
            for (m, x) in inputs.enumerated() {
                guard let x else {
                    outputs.append(nil)
                    saved.append([])
                    noises.append(nil)
                    continue
                }
                let (a1, f1, h1) = encode(x, module: m)
                let (mu, s, z, noise, klSum) = sample(h1, rng)
                noises.append(noise)
                kl += klSum
                rows += x.shape[0]
                let a2 = LayerMath.linear(z, bank["decoder.weight"], bank["decoder.bias"])
                let f2 = LayerMath.film(a2, scale: bank["decoder.scale"], shift: bank["decoder.shift"], module: m)
                let h2 = LayerMath.relu(f2)
                outputs.append(LayerMath.linear(h2, bank["output.weight"], bank["output.bias"]))
                saved.append([x, a1, f1, h1, mu, s, z, a2, f2, h2])
            }
            return Pass(outputs: outputs, klSum: kl, latentCount: rows, saved: saved, noise: noises)
        case .gated, .gatedMEND:
            var pass = pooledGate(inputs, rng)
            // What the gates scale: the normalised gradient itself, or MEND's output for it.
            if design == .gatedMEND {
                pass.residual = inputs.enumerated().map { m, x in x.map { residualForward($0, module: m) } ?? [] }
            }
            let gate = pass.shared[6]
            pass.outputs = inputs.indices.map { m in
                guard let x = design == .gated ? inputs[m] : pass.residual[m].last else { return nil }
                let y = Tensor(zeros: x.shape)
                for t in 0..<x.shape[0] {
                    for j in 0..<width { y.pointer[t * width + j] = x.pointer[t * width + j] * gate.pointer[j] }
                }
                return y
            }
            return pass
        }
    }

    /// MEND's two residual low-rank layers on one module's rows: `[h, p, q, f]` of each layer,
    /// then the output.
    private func residualForward(_ x: Tensor, module m: Int) -> [Tensor] {
        var h = x
        var keep: [Tensor] = []
        for i in 0..<2 {
            let p = LayerMath.linear(h, bank["layer\(i).down"], nil)
            let q = LayerMath.linear(p, bank["layer\(i).up"], bank["layer\(i).bias"])
            let f = LayerMath.film(q, scale: bank["layer\(i).scale"], shift: bank["layer\(i).shift"], module: m)
            let a = i == 0 ? LayerMath.relu(f) : f
            let next = h.copy()
            Kernels.add(a.pointer, into: next.pointer, count: next.count)
            keep += [h, p, q, f]
            h = next
        }
        return keep + [h]
    }

    /// Backward of ``residualForward(_:module:)`` from the output's gradient.
    private func residualBackward(_ dY: Tensor, saved: [Tensor], module m: Int, gradient g: (String) -> Tensor) {
        let dx = dY.copy()
        for i in [1, 0] {
            let h = saved[4 * i]
            let p = saved[4 * i + 1]
            let q = saved[4 * i + 2]
            let f = saved[4 * i + 3]
            let df = dx.copy()
            if i == 0 { LayerMath.reluBackward(df, input: f) }
            let dp = filmLinearBackward(
                df, input: p, linearOutput: q, film: "layer\(i)", weight: "layer\(i).up", bias: "layer\(i).bias", module: m,
                gradient: g)!
            let dh = LayerMath.linearBackward(
                dp, input: h, weight: bank["layer\(i).down"],
                dWeight: g("layer\(i).down"), dBias: nil, inputGradient: i > 0)
            // The residual path: the layer input's gradient is dx + dh.
            if let dh { Kernels.add(dh.pointer, into: dx.pointer, count: dx.count) }
        }
    }

    /// The gated designs' latent: the encoder rows of every module, pooled by attention into one
    /// Gaussian, sampled, and mapped to the gates `σ(B z + g)` (`shared[6]`, `[1, D]`).
    private func pooledGate(_ inputs: [Tensor?], _ rng: UnsafeMutablePointer<SplitMix64>?) -> Pass {
        var saved: [[Tensor]] = []
        var pooledRows: [Tensor] = []
        for (m, x) in inputs.enumerated() {
            guard let x else {
                saved.append([])
                continue
            }
            let (a1, f1, h1) = encode(x, module: m)
            saved.append([x, a1, f1, h1])
            pooledRows.append(h1)
        }
        let h = Self.stack(pooledRows)
        let w = bank["attention.weight"]
        let scores = (0..<h.shape[0]).map { MatMul.dot(h.pointer + $0 * rank, w.pointer, rank) }
        let top = scores.max() ?? 0
        let exps = scores.map { exp($0 - top) }
        let total = exps.reduce(0, +)
        let attention = Tensor(shape: [1, scores.count], values: exps.map { $0 / total })
        let pooled = Tensor(zeros: [1, rank])
        MatMul.gemm(
            m: 1, n: rank, k: h.shape[0], a: attention.pointer, lda: h.shape[0], b: h.pointer, ldb: rank,
            c: pooled.pointer, ldc: rank)
        let (mu, s, z, noise, klSum) = sample(pooled, rng)
        let gate = LayerMath.linear(z, bank["gate.weight"], bank["gate.bias"])
        for i in 0..<gate.count { gate.pointer[i] = 1 / (1 + exp(-gate.pointer[i])) }
        return Pass(
            outputs: [], klSum: klSum, latentCount: 1, saved: saved,
            shared: [h, attention, pooled, mu, s, z, gate], noise: [noise])
    }

    /// Backward of ``pooledGate(_:_:)`` from the gates' gradient `dGate` (`[1, D]`, before the
    /// sigmoid), plus `klScale` × the KL's gradient.
    private func pooledGateBackward(_ dGate: Tensor, pass: Pass, klScale: Float, gradient g: (String) -> Tensor) {
        let (h, attention, pooled, mu, logVar, z, gate) = (
            pass.shared[0], pass.shared[1], pass.shared[2],
            pass.shared[3], pass.shared[4], pass.shared[5], pass.shared[6]
        )
        for j in 0..<width { dGate.pointer[j] *= gate.pointer[j] * (1 - gate.pointer[j]) }
        let dz = LayerMath.linearBackward(
            dGate, input: z, weight: bank["gate.weight"], dWeight: g("gate.weight"),
            dBias: g("gate.bias"), inputGradient: true)!
        let noise = pass.noise.first ?? nil
        let dPooled = sampleBackward(dz, h: pooled, mu: mu, logVariance: logVar, noise: noise, klScale: klScale, gradient: g)
        // pooled = Σ_t a_t h_t, a = softmax(h w): ∂h_t = a_t ∂pooled + ∂e_t w, ∂e_t = a_t (∂a_t − Σ a ∂a).
        let rows = h.shape[0]
        let w = bank["attention.weight"]
        let dw = g("attention.weight")
        let dA = (0..<rows).map { MatMul.dot(h.pointer + $0 * rank, dPooled.pointer, rank) }
        let mean = zip(dA, (0..<rows).map { attention.pointer[$0] }).map { $0 * $1 }.reduce(0, +)
        let dH = Tensor(zeros: h.shape)
        for t in 0..<rows {
            let a = attention.pointer[t]
            let de = a * (dA[t] - mean)
            let row = dH.pointer + t * rank
            let ht = h.pointer + t * rank
            for j in 0..<rank {
                row[j] = a * dPooled.pointer[j] + de * w.pointer[j]
                dw.pointer[j] += de * ht[j]
            }
        }
        var next = 0
        for (m, saved) in pass.saved.enumerated() where !saved.isEmpty {
            let count = saved[0].shape[0]
            encodeBackward(dH.rows(next..<(next + count)).copy(), saved: saved, module: m, gradient: g)
            next += count
        }
    }

    /// The encoder of the bottleneck and gated designs: `ReLU(FiLM_m(x V₁ᵀ + b₁))`.
    private func encode(_ x: Tensor, module m: Int) -> (Tensor, Tensor, Tensor) {
        let a1 = LayerMath.linear(x, bank["encoder.weight"], bank["encoder.bias"])
        let f1 = LayerMath.film(a1, scale: bank["encoder.scale"], shift: bank["encoder.shift"], module: m)
        return (a1, f1, LayerMath.relu(f1))
    }

    /// The Gaussian heads on `h` (`[N, r]`): mean, unclamped log-variance, the latent (sampled when
    /// `rng` is given), the noise, and `Σ KL(N(μ, σ²) ‖ N(0, 1))`.
    private func sample(_ h: Tensor, _ rng: UnsafeMutablePointer<SplitMix64>?) -> (Tensor, Tensor, Tensor, Tensor?, Double) {
        let mu = LayerMath.linear(h, bank["mean.weight"], bank["mean.bias"])
        let s = LayerMath.linear(h, bank["logvar.weight"], bank["logvar.bias"])
        let z = mu.copy()
        var kl = 0.0
        let noise = rng.map { _ in Tensor(zeros: mu.shape) }
        for i in 0..<mu.count {
            let logVariance = min(10, max(-10, s.pointer[i]))
            let m = mu.pointer[i]
            kl += 0.5 * Double(m * m + exp(logVariance) - logVariance - 1)
            if let noise {
                let e = rng!.pointee.nextGaussian()
                noise.pointer[i] = e
                z.pointer[i] += exp(logVariance / 2) * e
            }
        }
        return (mu, s, z, noise, kl)
    }

    /// Backward of ``sample(_:_:)`` from `dz`, plus `klScale` × the KL's gradient; returns `∂L/∂h`.
    private func sampleBackward(
        _ dz: Tensor, h: Tensor, mu: Tensor, logVariance: Tensor, noise: Tensor?, klScale: Float, gradient g: (String) -> Tensor
    ) -> Tensor {
        // z = μ + exp(s/2)·ε; KL = ½ Σ (μ² + eˢ − s − 1), s clamped to [−10, 10].
        let dMu = Tensor(zeros: mu.shape)
        let dS = Tensor(zeros: mu.shape)
        for i in 0..<mu.count {
            dMu.pointer[i] = dz.pointer[i] + klScale * mu.pointer[i]
            let raw = logVariance.pointer[i]
            guard raw > -10 && raw < 10 else { continue }
            var ds = klScale * 0.5 * (exp(raw) - 1)
            if let noise { ds += dz.pointer[i] * 0.5 * noise.pointer[i] * exp(raw / 2) }
            dS.pointer[i] = ds
        }
        let dh = LayerMath.linearBackward(
            dMu, input: h, weight: bank["mean.weight"], dWeight: g("mean.weight"),
            dBias: g("mean.bias"), inputGradient: true)!
        let dhs = LayerMath.linearBackward(
            dS, input: h, weight: bank["logvar.weight"], dWeight: g("logvar.weight"),
            dBias: g("logvar.bias"), inputGradient: true)!
        Kernels.add(dhs.pointer, into: dh.pointer, count: dh.count)
        return dh
    }

    /// Backward of ``encode(_:module:)`` from `∂L/∂h₁` (which it overwrites).
    private func encodeBackward(_ dh1: Tensor, saved: [Tensor], module m: Int, gradient g: (String) -> Tensor) {
        let (x, a1, f1) = (saved[0], saved[1], saved[2])
        LayerMath.reluBackward(dh1, input: f1)
        filmLinearBackward(
            dh1, input: x, linearOutput: a1, film: "encoder", weight: "encoder.weight", bias: "encoder.bias", module: m,
            gradient: g, inputGradient: false)
    }

    /// Backward of a FiLM'd linear layer, `FiLM_m(W x + b)` from `∂L/∂output`: adds the
    /// gradients of `W`, `b` and the FiLM tables (`film.scale`, `film.shift`) and returns `∂L/∂x`
    /// when `inputGradient`.
    @discardableResult
    private func filmLinearBackward(
        _ dOutput: Tensor, input x: Tensor, linearOutput: Tensor, film: String, weight: String, bias: String,
        module m: Int, gradient g: (String) -> Tensor, inputGradient: Bool = true
    ) -> Tensor? {
        let dLinear = LayerMath.filmBackward(
            dOutput, input: linearOutput, scale: bank[film + ".scale"], module: m,
            dScale: g(film + ".scale"), dShift: g(film + ".shift"))
        return LayerMath.linearBackward(
            dLinear, input: x, weight: bank[weight], dWeight: g(weight), dBias: g(bias), inputGradient: inputGradient)
    }

    /// Adds to `gradient` (this bank's layout) the gradient of a loss whose gradient at each
    /// module's output is `outputGradients[slot]`, plus `klScale · ∂(klSum)/∂θ` (the ITM term).
    func backward(_ pass: Pass, outputGradients: [Tensor?], klScale: Float, into gradient: Tensor) {
        func g(_ name: String) -> Tensor { bank.view(name, in: gradient) }
        switch design {
        case .mend:
            for (m, dY) in outputGradients.enumerated() {
                guard let dY else { continue }
                residualBackward(dY, saved: pass.residual[m], module: m, gradient: g)
            }
        case .bottleneck:
            for (m, dY) in outputGradients.enumerated() {
                guard let dY else { continue }
                let s = pass.saved[m]
                let (h1, mu, logVar, z, a2, f2, h2) = (s[3], s[4], s[5], s[6], s[7], s[8], s[9])
                let noise = pass.noise[m]
                let dh2 = LayerMath.linearBackward(
                    dY, input: h2, weight: bank["output.weight"], dWeight: g("output.weight"),
                    dBias: g("output.bias"), inputGradient: true)!
                LayerMath.reluBackward(dh2, input: f2)
                let dz = filmLinearBackward(
                    dh2, input: z, linearOutput: a2, film: "decoder", weight: "decoder.weight", bias: "decoder.bias",
                    module: m, gradient: g)!
                let dh1 = sampleBackward(dz, h: h1, mu: mu, logVariance: logVar, noise: noise, klScale: klScale, gradient: g)
                encodeBackward(dh1, saved: s, module: m, gradient: g)
            }
        case .gated, .gatedMEND:
            // y = x ⊙ gate (gate broadcast over rows, x the gated rows): ∂L/∂gate = Σ_rows dY ⊙ x,
            // and for gated MEND ∂L/∂x = dY ⊙ gate into MEND's layers.
            let gate = pass.shared[6]
            let dGate = Tensor(zeros: [1, width])
            for (m, dY) in outputGradients.enumerated() {
                guard let dY, let x = design == .gated ? pass.saved[m].first : pass.residual[m].last else { continue }
                let dX = design == .gatedMEND ? Tensor(zeros: x.shape) : nil
                for t in 0..<x.shape[0] {
                    for j in 0..<width {
                        let i = t * width + j
                        dGate.pointer[j] += dY.pointer[i] * x.pointer[i]
                        dX?.pointer[i] = dY.pointer[i] * gate.pointer[j]
                    }
                }
                if let dX { residualBackward(dX, saved: pass.residual[m], module: m, gradient: g) }
            }
            pooledGateBackward(dGate, pass: pass, klScale: klScale, gradient: g)
        }
    }

    /// Rows of several `[T_i, w]` tensors, stacked.
    static func stack(_ parts: [Tensor]) -> Tensor {
        let width = parts.first?.shape[1] ?? 0
        let rows = parts.reduce(0) { $0 + $1.shape[0] }
        let out = Tensor(zeros: [rows, width])
        var next = 0
        for p in parts {
            (out.pointer + next * width).update(from: p.pointer, count: p.count)
            next += p.shape[0]
        }
        return out
    }
}
