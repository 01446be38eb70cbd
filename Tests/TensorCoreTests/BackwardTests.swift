import Foundation
import TensorCore
import Testing

/// Finite-difference checks of the backward kernels and losses.
///
/// Each analytic float32 gradient is compared with central differences (step 1e-6·max(1, |x|),
/// in Double) of a Double reference of the forward operation, on the scalar `L = ⟨dY, y⟩` for
/// a random output gradient `dY` (or the loss itself). The central differences are exact to
/// ~1e-9, so the tolerance only has to cover float32 rounding in the kernels: the largest
/// error must be within 1e-4 of the largest gradient component.
@Suite struct BackwardTests {
    static let tolerance = 1e-4

    func random(_ n: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (rng.nextUnit() * 2 - 1) * scale + offset }
    }

    /// Central differences of `f` at `x`.
    func numericGradient(of x: [Float], _ f: ([Double]) -> Double) -> [Double] {
        var point = x.map(Double.init)
        var gradient = [Double](repeating: 0, count: x.count)
        for i in point.indices {
            let old = point[i]
            let h = 1e-6 * max(1, abs(old))
            point[i] = old + h
            let up = f(point)
            point[i] = old - h
            let down = f(point)
            point[i] = old
            gradient[i] = (up - down) / (2 * h)
        }
        return gradient
    }

    func expectClose(
        _ analytic: [Float], _ numeric: [Double], _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(analytic.count == numeric.count, "\(what): sizes", sourceLocation: sourceLocation)
        let scale = numeric.map(abs).max() ?? 0
        #expect(scale > 1e-3, "\(what): gradient vanishes, the check would be vacuous", sourceLocation: sourceLocation)
        let error = zip(analytic, numeric).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(
            error <= Self.tolerance * scale, "\(what): error \(error) for gradients up to \(scale)",
            sourceLocation: sourceLocation)
    }

    /// The `rows × width` entries of a matrix stored with leading dimension `ld`.
    func strided<T>(_ a: [T], rows: Int, width: Int, ld: Int) -> [T] {
        (0..<rows).flatMap { r in a[(r * ld)..<(r * ld + width)] }
    }

    /// Runs `kernel` into a zeroed, an overwritten and an accumulated buffer of `count`
    /// floats: overwriting must ignore the old contents, accumulating must add to them.
    func expectAccumulateOption(
        count: Int, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ kernel: (UnsafeMutablePointer<Float>, Bool) -> Void
    ) {
        var fresh = [Float](repeating: 0, count: count)
        kernel(&fresh, false)
        let before = random(count, seed: 99)
        var overwritten = before
        var summed = before
        kernel(&overwritten, false)
        kernel(&summed, true)
        #expect(overwritten == fresh, "\(what): overwrite", sourceLocation: sourceLocation)
        let error = (0..<count).map { abs(summed[$0] - (before[$0] + fresh[$0])) }.max() ?? 0
        #expect(error <= 1e-5, "\(what): accumulate error \(error)", sourceLocation: sourceLocation)
        #expect(fresh.contains { $0 != 0 }, "\(what): no output", sourceLocation: sourceLocation)
    }

    // MARK: Linear

    @Test func linearGradientsMatchFiniteDifferences() {
        let m = 5
        let k = 12
        let n = 7
        let ldx = 14
        let ldDY = 9
        let ldDX = 13
        let x = random(m * ldx, seed: 1)
        let w = random(n * k, seed: 2)
        let b = random(n, seed: 3)
        let dY = random(m * ldDY, seed: 4)
        func loss(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var l = 0.0
            for r in 0..<m {
                for j in 0..<n {
                    var y = b[j]
                    for i in 0..<k { y += x[r * ldx + i] * w[j * k + i] }
                    l += Double(dY[r * ldDY + j]) * y
                }
            }
            return l
        }
        let xd = x.map(Double.init)
        let wd = w.map(Double.init)
        let bd = b.map(Double.init)
        var dX = [Float](repeating: 7, count: m * ldDX)  // 7 marks the padding, left alone
        Backward.linearInput(dY, rows: m, ldDY: ldDY, weight: w, outputs: n, inputs: k, into: &dX, ldDX: ldDX)
        var dW = [Float](repeating: 0, count: n * k)
        var dB = [Float](repeating: 0, count: n)
        Backward.linearWeight(dY, rows: m, ldDY: ldDY, input: x, ldx: ldx, outputs: n, inputs: k, into: &dW)
        Backward.linearBias(dY, rows: m, outputs: n, ldDY: ldDY, into: &dB)

        let numericX = numericGradient(of: x) { loss($0, wd, bd) }
        expectClose(strided(dX, rows: m, width: k, ld: ldDX), strided(numericX, rows: m, width: k, ld: ldx), "dX")
        #expect((0..<m).allSatisfy { r in (k..<ldDX).allSatisfy { dX[r * ldDX + $0] == 7 } })
        expectClose(dW, numericGradient(of: w) { loss(xd, $0, bd) }, "dW")
        expectClose(dB, numericGradient(of: b) { loss(xd, wd, $0) }, "dBias")

        expectAccumulateOption(count: m * k, "dX") { out, accumulate in
            Backward.linearInput(
                dY, rows: m, ldDY: ldDY, weight: w, outputs: n, inputs: k,
                into: out, ldDX: k, accumulate: accumulate)
        }
        expectAccumulateOption(count: n * k, "dW") { out, accumulate in
            Backward.linearWeight(
                dY, rows: m, ldDY: ldDY, input: x, ldx: ldx, outputs: n, inputs: k,
                into: out, accumulate: accumulate)
        }
        expectAccumulateOption(count: n, "dBias") { out, accumulate in
            Backward.linearBias(dY, rows: m, outputs: n, ldDY: ldDY, into: out, accumulate: accumulate)
        }
    }

    /// Shapes large enough for the matmuls to be split over the thread pool, and one row
    /// (its own path).
    @Test(arguments: [(40, 576, 192), (1, 600, 45)])
    func linearGradientsMatchNaiveProducts(m: Int, k: Int, n: Int) {
        let x = random(m * k, seed: 5)
        let w = random(n * k, seed: 6)
        let dY = random(m * n, seed: 7)
        var dX = [Float](repeating: 0, count: m * k)
        var dW = [Float](repeating: 0, count: n * k)
        Backward.linearInput(dY, rows: m, ldDY: n, weight: w, outputs: n, inputs: k, into: &dX, ldDX: k)
        Backward.linearWeight(dY, rows: m, ldDY: n, input: x, ldx: k, outputs: n, inputs: k, into: &dW)
        var errorX = 0.0
        var errorW = 0.0
        for r in 0..<m {
            for i in 0..<k {
                var s = 0.0
                for j in 0..<n { s += Double(dY[r * n + j]) * Double(w[j * k + i]) }
                errorX = max(errorX, abs(Double(dX[r * k + i]) - s))
            }
        }
        for j in 0..<n {
            for i in 0..<k {
                var s = 0.0
                for r in 0..<m { s += Double(dY[r * n + j]) * Double(x[r * k + i]) }
                errorW = max(errorW, abs(Double(dW[j * k + i]) - s))
            }
        }
        #expect(errorX <= 1e-5 * sqrt(Double(n)))
        #expect(errorW <= 1e-5 * sqrt(Double(m)))
        expectAccumulateOption(count: m * k, "dX") { out, accumulate in
            Backward.linearInput(
                dY, rows: m, ldDY: n, weight: w, outputs: n, inputs: k,
                into: out, ldDX: k, accumulate: accumulate)
        }
        expectAccumulateOption(count: n * k, "dW") { out, accumulate in
            Backward.linearWeight(
                dY, rows: m, ldDY: n, input: x, ldx: k, outputs: n, inputs: k,
                into: out, accumulate: accumulate)
        }
    }

    // MARK: Normalisation

    @Test func rmsNormGradientsMatchFiniteDifferences() {
        let rows = 3
        let width = 37
        let ldx = 40
        let ldDY = 38
        let eps: Float = 1e-5
        let x = random(rows * ldx, seed: 10)
        let w = random(width, seed: 11, scale: 0.5, offset: 1)
        let dY = random(rows * ldDY, seed: 12)
        func loss(_ x: [Double], _ w: [Double]) -> Double {
            var l = 0.0
            for r in 0..<rows {
                let row = x[(r * ldx)..<(r * ldx + width)]
                let s = 1 / sqrt(row.map { $0 * $0 }.reduce(0, +) / Double(width) + Double(eps))
                for i in 0..<width { l += Double(dY[r * ldDY + i]) * x[r * ldx + i] * s * w[i] }
            }
            return l
        }
        // The reference is the forward kernel's formula.
        var y = [Float](repeating: 0, count: rows * width)
        Kernels.rmsNorm(x, rows: rows, width: width, ldx: ldx, weight: w, eps: eps, into: &y, ldy: width)
        let forward = (0..<rows).flatMap { r in (0..<width).map { Double(dY[r * ldDY + $0]) * Double(y[r * width + $0]) } }
        #expect(abs(forward.reduce(0, +) - loss(x.map(Double.init), w.map(Double.init))) < 1e-4)

        var dX = [Float](repeating: 0, count: rows * width)
        var dW = [Float](repeating: 0, count: width)
        Backward.rmsNorm(
            x, rows: rows, width: width, ldx: ldx, weight: w, eps: eps, dY: dY, ldDY: ldDY,
            dX: &dX, ldDX: width, dWeight: &dW)
        let wd = w.map(Double.init)
        let xd = x.map(Double.init)
        expectClose(dX, strided(numericGradient(of: x) { loss($0, wd) }, rows: rows, width: width, ld: ldx), "dX")
        expectClose(dW, numericGradient(of: w) { loss(xd, $0) }, "dWeight")

        expectAccumulateOption(count: rows * width, "dX") { out, accumulate in
            Backward.rmsNorm(
                x, rows: rows, width: width, ldx: ldx, weight: w, eps: eps, dY: dY, ldDY: ldDY,
                dX: out, ldDX: width, accumulate: accumulate, dWeight: nil)
        }
        // dWeight accumulates over calls.
        Backward.rmsNorm(
            x, rows: rows, width: width, ldx: ldx, weight: w, eps: eps, dY: dY, ldDY: ldDY,
            dX: &dX, ldDX: width, dWeight: &dW)
        expectClose(dW.map { $0 / 2 }, numericGradient(of: w) { loss(xd, $0) }, "dWeight, twice")
    }

    @Test func layerNormGradientsMatchFiniteDifferences() {
        let rows = 3
        let width = 37
        let ldx = 39
        let eps: Float = 1e-5
        let x = random(rows * ldx, seed: 20, scale: 3, offset: 1)
        let w = random(width, seed: 21, scale: 0.5, offset: 1)
        let b = random(width, seed: 22)
        let dY = random(rows * width, seed: 23)
        func loss(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var l = 0.0
            for r in 0..<rows {
                let row = Array(x[(r * ldx)..<(r * ldx + width)])
                let mean = row.reduce(0, +) / Double(width)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
                let s = 1 / sqrt(variance + Double(eps))
                for i in 0..<width { l += Double(dY[r * width + i]) * ((row[i] - mean) * s * w[i] + b[i]) }
            }
            return l
        }
        var y = [Float](repeating: 0, count: rows * width)
        Kernels.layerNorm(x, rows: rows, width: width, ldx: ldx, weight: w, bias: b, eps: eps, into: &y, ldy: width)
        let forward = zip(dY, y).map { Double($0) * Double($1) }.reduce(0, +)
        let xd = x.map(Double.init)
        let wd = w.map(Double.init)
        let bd = b.map(Double.init)
        #expect(abs(forward - loss(xd, wd, bd)) < 1e-4)

        var dX = [Float](repeating: 0, count: rows * width)
        var dW = [Float](repeating: 0, count: width)
        var dB = [Float](repeating: 0, count: width)
        Backward.layerNorm(
            x, rows: rows, width: width, ldx: ldx, weight: w, eps: eps, dY: dY, ldDY: width,
            dX: &dX, ldDX: width, dWeight: &dW, dBias: &dB)
        expectClose(dX, strided(numericGradient(of: x) { loss($0, wd, bd) }, rows: rows, width: width, ld: ldx), "dX")
        expectClose(dW, numericGradient(of: w) { loss(xd, $0, bd) }, "dWeight")
        expectClose(dB, numericGradient(of: b) { loss(xd, wd, $0) }, "dBias")
        expectAccumulateOption(count: rows * width, "dX") { out, accumulate in
            Backward.layerNorm(
                x, rows: rows, width: width, ldx: ldx, weight: w, eps: eps, dY: dY, ldDY: width,
                dX: out, ldDX: width, accumulate: accumulate, dWeight: nil, dBias: nil)
        }
    }

    // MARK: Elementwise

    @Test func softmaxGradientMatchesFiniteDifferences() {
        let count = 21
        let z = random(count, seed: 30, scale: 3)
        let dP = random(count, seed: 31)
        func loss(_ z: [Double]) -> Double {
            let top = z.max()!
            let e = z.map { exp($0 - top) }
            let sum = e.reduce(0, +)
            return zip(dP, e).map { Double($0) * $1 / sum }.reduce(0, +)
        }
        var p = z
        Kernels.softmax(&p, count: count)
        var dZ = [Float](repeating: 0, count: count)
        Backward.softmax(p, dP: dP, count: count, into: &dZ)
        expectClose(dZ, numericGradient(of: z, loss), "dZ")
        // In place (dZ aliasing dP).
        var inPlace = dP
        inPlace.withUnsafeMutableBufferPointer { Backward.softmax(p, dP: $0.baseAddress!, count: count, into: $0.baseAddress!) }
        #expect(inPlace == dZ)
    }

    @Test func swigluGradientsMatchFiniteDifferences() {
        let count = 37
        let gate = random(count, seed: 40, scale: 6)
        let up = random(count, seed: 41)
        let dOut = random(count, seed: 42)
        func loss(_ g: [Double], _ u: [Double]) -> Double {
            (0..<count).map { Double(dOut[$0]) * g[$0] / (1 + exp(-g[$0])) * u[$0] }.reduce(0, +)
        }
        var dGate = [Float](repeating: 0, count: count)
        var dUp = dGate
        Backward.swiglu(gate: gate, up: up, count: count, dOut: dOut, dGate: &dGate, dUp: &dUp)
        let gd = gate.map(Double.init)
        let ud = up.map(Double.init)
        expectClose(dGate, numericGradient(of: gate) { loss($0, ud) }, "dGate")
        expectClose(dUp, numericGradient(of: up) { loss(gd, $0) }, "dUp")
        // Saturated gates: finite gradients.
        var dExtreme = [Float](repeating: 0, count: 2)
        var dUpExtreme = dExtreme
        Backward.swiglu(gate: [-200, 200], up: [1, 1], count: 2, dOut: [1, 1], dGate: &dExtreme, dUp: &dUpExtreme)
        #expect(dExtreme == [0, 1] && dUpExtreme == [0, 200])
    }

    @Test func geluGradientMatchesFiniteDifferences() {
        let count = 37
        let x = random(count, seed: 50, scale: 4)
        let dY = random(count, seed: 51)
        func loss(_ x: [Double]) -> Double {
            (0..<count).map { i in
                let v = x[i]
                return Double(dY[i]) * 0.5 * v * (1 + tanh(sqrt(2 / Double.pi) * (v + 0.044715 * v * v * v)))
            }.reduce(0, +)
        }
        var dX = [Float](repeating: 0, count: count)
        Backward.geluTanh(x, count: count, dY: dY, into: &dX)
        expectClose(dX, numericGradient(of: x, loss), "dX")
    }

    // MARK: RoPE and embeddings

    @Test func ropeTransposeMatchesFiniteDifferences() {
        let d = 8
        let heads = 3
        let half = d / 2
        // A scaling ≠ 1 makes the rotation non-orthogonal: the transpose, not the inverse, is right.
        let rope = RotaryEmbedding(
            inverseFrequencies: RotaryEmbedding.standard(headDim: d, base: 10000),
            headDim: d, attentionScaling: 1.3)
        var cos = [Float](repeating: 0, count: half)
        var sin = cos
        rope.angles(position: 5, cos: &cos, sin: &sin)
        let x = random(heads * d, seed: 60)
        let dY = random(heads * d, seed: 61)
        func loss(_ x: [Double]) -> Double {
            var l = 0.0
            for h in 0..<heads {
                for i in 0..<half {
                    let a = x[h * d + i]
                    let b = x[h * d + i + half]
                    let c = Double(cos[i])
                    let s = Double(sin[i])
                    l += Double(dY[h * d + i]) * (a * c - b * s) + Double(dY[h * d + i + half]) * (b * c + a * s)
                }
            }
            return l
        }
        var rotated = x
        rope.apply(&rotated, heads: heads, cos: cos, sin: sin)
        #expect(abs(zip(dY, rotated).map { Double($0) * Double($1) }.reduce(0, +) - loss(x.map(Double.init))) < 1e-5)
        var dX = dY
        rope.applyTransposed(&dX, heads: heads, cos: cos, sin: sin)
        expectClose(dX, numericGradient(of: x, loss), "dX")
    }

    @Test func embeddingBackwardScatterAddsRows() {
        let vocabulary = 17
        let width = 12
        let ldDX = 13
        let tokens = [3, 5, 3, 16, 0]
        let table = random(vocabulary * width, seed: 70)
        let dX = random(tokens.count * ldDX, seed: 71)
        func loss(_ table: [Double]) -> Double {
            var l = 0.0
            for (r, token) in tokens.enumerated() {
                for i in 0..<width { l += Double(dX[r * ldDX + i]) * table[token * width + i] }
            }
            return l
        }
        var dTable = [Float](repeating: 0, count: vocabulary * width)
        Backward.embedding(dX, rows: tokens.count, width: width, ldDX: ldDX, tokens: tokens, into: &dTable)
        expectClose(dTable, numericGradient(of: table, loss), "dTable")
        // Scatter-add accumulates into what is there.
        let before = dTable
        Backward.embedding(dX, rows: tokens.count, width: width, ldDX: ldDX, tokens: tokens, into: &dTable)
        #expect(zip(dTable, before).allSatisfy { abs($0 - 2 * $1) < 1e-6 })
    }

    // MARK: Attention

    struct AttentionShape {
        let t: Int, past: Int, heads: Int, kvHeads: Int, d: Int
        var ldq: Int { heads * d + 3 }  // strided, as in a fused QKV row
        var ldk: Int { kvHeads * d + 1 }
        var ldv: Int { kvHeads * d }
        var length: Int { past + t }
    }

    /// `⟨dOut, attention(q, k, v)⟩` in Double, written from the definition.
    func attentionLoss(_ s: AttentionShape, q: [Double], k: [Double], v: [Double], dOut: [Float]) -> Double {
        let group = s.heads / s.kvHeads
        let width = s.heads * s.d
        let scale = 1 / Double(s.d).squareRoot()
        var l = 0.0
        var weights = [Double](repeating: 0, count: s.length)
        for t in 0..<s.t {
            for h in 0..<s.heads {
                let g = h / group
                let visible = s.past + t + 1
                for j in 0..<visible {
                    var score = 0.0
                    for i in 0..<s.d { score += q[t * s.ldq + h * s.d + i] * k[j * s.ldk + g * s.d + i] }
                    weights[j] = score * scale
                }
                let top = weights[0..<visible].max()!
                var sum = 0.0
                for j in 0..<visible {
                    weights[j] = exp(weights[j] - top)
                    sum += weights[j]
                }
                for i in 0..<s.d {
                    var out = 0.0
                    for j in 0..<visible { out += weights[j] / sum * v[j * s.ldv + g * s.d + i] }
                    l += Double(dOut[t * width + h * s.d + i]) * out
                }
            }
        }
        return l
    }

    func attentionGradients(
        _ s: AttentionShape, q: [Float], k: [Float], v: [Float], dOut: [Float]
    ) -> (dQ: [Float], dK: [Float], dV: [Float]) {
        var dQ = [Float](repeating: 0, count: s.t * s.heads * s.d)
        var dK = [Float](repeating: 0, count: s.length * s.kvHeads * s.d)
        var dV = dK
        Backward.attention(
            queries: q, ldq: s.ldq, keys: k, ldk: s.ldk, values: v, ldv: s.ldv,
            newTokens: s.t, past: s.past, heads: s.heads, kvHeads: s.kvHeads, headDim: s.d,
            dOut: dOut, ldDOut: s.heads * s.d, dQ: &dQ, ldDQ: s.heads * s.d,
            dK: &dK, ldDK: s.kvHeads * s.d, dV: &dV, ldDV: s.kvHeads * s.d)
        return (dQ, dK, dV)
    }

    /// Grouped-query heads (4 query heads on 2 KV heads), past keys, and (T = 70) more than
    /// one block of query rows.
    @Test(arguments: [(5, 3, 4, 2), (5, 0, 2, 2), (70, 2, 2, 1)])
    func attentionGradientsMatchFiniteDifferences(t: Int, past: Int, heads: Int, kvHeads: Int) {
        let s = AttentionShape(t: t, past: past, heads: heads, kvHeads: kvHeads, d: 4)
        let q = random(s.t * s.ldq, seed: 80, scale: 2)
        let k = random(s.length * s.ldk, seed: 81, scale: 2)
        let v = random(s.length * s.ldv, seed: 82)
        let dOut = random(s.t * s.heads * s.d, seed: 83)
        let (dQ, dK, dV) = attentionGradients(s, q: q, k: k, v: v, dOut: dOut)
        let qd = q.map(Double.init)
        let kd = k.map(Double.init)
        let vd = v.map(Double.init)
        let numericQ = numericGradient(of: q) { attentionLoss(s, q: $0, k: kd, v: vd, dOut: dOut) }
        let numericK = numericGradient(of: k) { attentionLoss(s, q: qd, k: $0, v: vd, dOut: dOut) }
        let numericV = numericGradient(of: v) { attentionLoss(s, q: qd, k: kd, v: $0, dOut: dOut) }
        expectClose(dQ, strided(numericQ, rows: s.t, width: s.heads * s.d, ld: s.ldq), "dQ")
        expectClose(dK, strided(numericK, rows: s.length, width: s.kvHeads * s.d, ld: s.ldk), "dK")
        expectClose(dV, numericV, "dV")
    }

    @Test func attentionGradientsFollowTheHeadGrouping() {
        // Gradient only at query heads 0 and 1, which share KV head 0.
        let s = AttentionShape(t: 5, past: 3, heads: 4, kvHeads: 2, d: 4)
        let q = random(s.t * s.ldq, seed: 84)
        let k = random(s.length * s.ldk, seed: 85)
        let v = random(s.length * s.ldv, seed: 86)
        var dOut = random(s.t * s.heads * s.d, seed: 87)
        for t in 0..<s.t { for i in (2 * s.d)..<(4 * s.d) { dOut[t * s.heads * s.d + i] = 0 } }
        let (dQ, dK, dV) = attentionGradients(s, q: q, k: k, v: v, dOut: dOut)
        for t in 0..<s.t {
            #expect((0..<(2 * s.d)).contains { dQ[t * 16 + $0] != 0 })
            #expect(((2 * s.d)..<(4 * s.d)).allSatisfy { dQ[t * 16 + $0] == 0 })
        }
        for j in 0..<s.length {
            #expect((0..<s.d).contains { dV[j * 8 + $0] != 0 })
            #expect((s.d..<(2 * s.d)).allSatisfy { dK[j * 8 + $0] == 0 && dV[j * 8 + $0] == 0 })
        }
    }

    @Test func attentionAccumulateOption() {
        let s = AttentionShape(t: 5, past: 3, heads: 4, kvHeads: 2, d: 4)
        let q = random(s.t * s.ldq, seed: 88)
        let k = random(s.length * s.ldk, seed: 89)
        let v = random(s.length * s.ldv, seed: 90)
        let dOut = random(s.t * s.heads * s.d, seed: 91)
        let qCount = s.t * s.heads * s.d
        let kvCount = s.length * s.kvHeads * s.d
        // One buffer holding dQ, dK and dV.
        expectAccumulateOption(count: qCount + 2 * kvCount, "dQ, dK, dV") { out, accumulate in
            Backward.attention(
                queries: q, ldq: s.ldq, keys: k, ldk: s.ldk, values: v, ldv: s.ldv,
                newTokens: s.t, past: s.past, heads: s.heads, kvHeads: s.kvHeads, headDim: s.d,
                dOut: dOut, ldDOut: s.heads * s.d, dQ: out, ldDQ: s.heads * s.d,
                dK: out + qCount, ldDK: s.kvHeads * s.d, dV: out + qCount + kvCount,
                ldDV: s.kvHeads * s.d, accumulate: accumulate)
        }
    }

    // MARK: Losses

    /// Cross-entropy in Double: `Σ_r w_r (logsumexp(z_r) − z_r[target])`.
    func crossEntropyReference(_ z: [Double], rows: Int, v: Int, targets: [Int], weights: [Double]) -> Double {
        (0..<rows).map { r in
            let row = z[(r * v)..<((r + 1) * v)]
            let top = row.max()!
            return weights[r] * (top + log(row.map { exp($0 - top) }.reduce(0, +)) - z[r * v + targets[r]])
        }.reduce(0, +)
    }

    @Test func crossEntropyIsTheMeanNLLWithItsGradient() {
        let rows = 4
        let v = 17
        let logits = random(rows * v, seed: 100, scale: 4)
        let targets = [3, 16, 0, 3]
        let mean = [Double](repeating: 1.0 / Double(rows), count: rows)
        var dLogits = [Float](repeating: 0, count: rows * v)
        let loss = Losses.crossEntropy(
            logits: logits, rows: rows, vocabularySize: v, ldLogits: v,
            targets: targets, dLogits: &dLogits, ldDLogits: v)
        let reference = crossEntropyReference(logits.map(Double.init), rows: rows, v: v, targets: targets, weights: mean)
        #expect(abs(Double(loss) - reference) < 1e-5)
        expectClose(
            dLogits,
            numericGradient(of: logits) {
                crossEntropyReference($0, rows: rows, v: v, targets: targets, weights: mean)
            }, "dLogits")

        // Per-row weights (a sum with one row left out), in place, strided.
        let ld = 20
        let weights: [Float] = [1, 0.5, 0, 2]
        var buffer = [Float](repeating: 0, count: rows * ld)
        for r in 0..<rows { for i in 0..<v { buffer[r * ld + i] = logits[r * v + i] } }
        let weighted = buffer.withUnsafeMutableBufferPointer { b in
            Losses.crossEntropy(
                logits: b.baseAddress!, rows: rows, vocabularySize: v, ldLogits: ld, targets: targets,
                weights: weights, dLogits: b.baseAddress!, ldDLogits: ld)
        }
        let wd = weights.map(Double.init)
        #expect(
            abs(
                Double(weighted)
                    - crossEntropyReference(
                        logits.map(Double.init), rows: rows, v: v,
                        targets: targets, weights: wd)) < 1e-5)
        expectClose(
            strided(buffer, rows: rows, width: v, ld: ld),
            numericGradient(of: logits) {
                crossEntropyReference($0, rows: rows, v: v, targets: targets, weights: wd)
            }, "weighted dLogits")
        #expect(
            Losses.crossEntropy(
                logits: logits, rows: rows, vocabularySize: v, ldLogits: v, targets: targets,
                dLogits: nil, ldDLogits: 0) == loss)
    }

    /// `Σ_r w_r KL(softmax(a_r) ‖ softmax(b_r))` in Double.
    func klReference(_ a: [Float], _ b: [Double], rows: Int, v: Int, weights: [Double]) -> Double {
        func logSoftmax(_ x: [Double]) -> [Double] {
            let top = x.max()!
            let lse = top + log(x.map { exp($0 - top) }.reduce(0, +))
            return x.map { $0 - lse }
        }
        return (0..<rows).map { r in
            let lp = logSoftmax(a[(r * v)..<((r + 1) * v)].map(Double.init))
            let lq = logSoftmax(Array(b[(r * v)..<((r + 1) * v)]))
            return weights[r] * zip(lp, lq).map { exp($0) * ($0 - $1) }.reduce(0, +)
        }.reduce(0, +)
    }

    @Test func klDivergenceOfTheEditedFromTheOriginalDistribution() {
        let rows = 3
        let v = 17
        let original = random(rows * v, seed: 110, scale: 3)
        let edited = zip(original, random(rows * v, seed: 111)).map { $0 + $1 }
        let mean = [Double](repeating: 1.0 / Double(rows), count: rows)
        var dEdited = [Float](repeating: 0, count: rows * v)
        let kl = Losses.klDivergence(
            reference: original, ldReference: v, edited: edited, ldEdited: v,
            rows: rows, vocabularySize: v, dEdited: &dEdited, ldDEdited: v)
        let reference = klReference(original, edited.map(Double.init), rows: rows, v: v, weights: mean)
        #expect(reference > 0.01 && abs(Double(kl) - reference) < 1e-5)
        expectClose(
            dEdited,
            numericGradient(of: edited) {
                klReference(original, $0, rows: rows, v: v, weights: mean)
            }, "dEdited")

        // Identical distributions (even shifted logits): zero divergence and gradient.
        let shifted = original.map { $0 + 5 }
        let zero = Losses.klDivergence(
            reference: original, ldReference: v, edited: shifted, ldEdited: v,
            rows: rows, vocabularySize: v, dEdited: &dEdited, ldDEdited: v)
        #expect(abs(zero) < 1e-5 && dEdited.allSatisfy { abs($0) < 1e-6 })
    }

    @Test func squaredNormAndItsGradient() {
        let x = random(37, seed: 120)
        var dX = [Float](repeating: 0, count: 37)
        let value = Losses.squaredNorm(x, count: 37, scale: 0.7, dX: &dX)
        #expect(abs(Double(value) - 0.7 * x.map { Double($0) * Double($0) }.reduce(0, +)) < 1e-5)
        expectClose(dX, numericGradient(of: x) { 0.7 * $0.map { $0 * $0 }.reduce(0, +) }, "dX")
        expectAccumulateOption(count: 37, "dX") { out, accumulate in
            Losses.squaredNorm(x, count: 37, scale: 0.7, dX: out, accumulate: accumulate)
        }
    }

    // MARK: Composition

    /// A pre-norm SwiGLU block with a residual and an output head under cross-entropy,
    /// differentiated by chaining the kernels:
    /// `h = rmsNorm(x)`, `[g | u] = h·W_inᵀ`, `y = x + (silu(g)⊙u)·W_downᵀ`, `loss = CE(y·W_outᵀ)`.
    @Test func chainedKernelsDifferentiateAnMLPBlock() {
        let t = 4
        let c = 12
        let f = 8
        let v = 17
        let eps: Float = 1e-5
        let x = random(t * c, seed: 130)
        let norm = random(c, seed: 131, scale: 0.3, offset: 1)
        let wIn = random(2 * f * c, seed: 132, scale: 0.5)
        let wDown = random(c * f, seed: 133, scale: 0.5)
        let wOut = random(v * c, seed: 134)
        let targets = [1, 7, 16, 7]

        func loss(_ x: [Double], _ wIn: [Double]) -> Double {
            var logits = [Double](repeating: 0, count: t * v)
            for r in 0..<t {
                let row = Array(x[(r * c)..<((r + 1) * c)])
                let s = 1 / sqrt(row.map { $0 * $0 }.reduce(0, +) / Double(c) + Double(eps))
                let h = (0..<c).map { row[$0] * s * Double(norm[$0]) }
                let u = (0..<(2 * f)).map { j in (0..<c).map { h[$0] * wIn[j * c + $0] }.reduce(0, +) }
                let a = (0..<f).map { u[$0] / (1 + exp(-u[$0])) * u[f + $0] }
                let y = (0..<c).map { i in row[i] + (0..<f).map { a[$0] * Double(wDown[i * f + $0]) }.reduce(0, +) }
                for j in 0..<v { logits[r * v + j] = (0..<c).map { y[$0] * Double(wOut[j * c + $0]) }.reduce(0, +) }
            }
            return crossEntropyReference(
                logits, rows: t, v: v, targets: targets,
                weights: [Double](repeating: 1.0 / Double(t), count: t))
        }

        // Forward, keeping what the backward reads.
        var h = [Float](repeating: 0, count: t * c)
        var u = [Float](repeating: 0, count: t * 2 * f)
        var a = [Float](repeating: 0, count: t * f)
        var y = x
        var logits = [Float](repeating: 0, count: t * v)
        Kernels.rmsNorm(x, rows: t, width: c, ldx: c, weight: norm, eps: eps, into: &h, ldy: c)
        MatMul.gemm(transB: true, m: t, n: 2 * f, k: c, a: h, lda: c, b: wIn, ldb: c, c: &u, ldc: 2 * f)
        u.withUnsafeBufferPointer { u in
            a.withUnsafeMutableBufferPointer { a in
                for r in 0..<t {
                    let row = u.baseAddress! + r * 2 * f
                    Kernels.swiglu(gate: row, up: row + f, count: f, into: a.baseAddress! + r * f)
                }
            }
        }
        MatMul.gemm(transB: true, m: t, n: c, k: f, a: a, lda: f, b: wDown, ldb: f, beta: 1, c: &y, ldc: c)
        MatMul.gemm(transB: true, m: t, n: v, k: c, a: y, lda: c, b: wOut, ldb: c, c: &logits, ldc: v)

        // Backward.
        var dLogits = [Float](repeating: 0, count: t * v)
        let value = Losses.crossEntropy(
            logits: logits, rows: t, vocabularySize: v, ldLogits: v, targets: targets,
            dLogits: &dLogits, ldDLogits: v)
        #expect(abs(Double(value) - loss(x.map(Double.init), wIn.map(Double.init))) < 1e-4)
        var dY = [Float](repeating: 0, count: t * c)
        var dA = [Float](repeating: 0, count: t * f)
        Backward.linearInput(dLogits, rows: t, ldDY: v, weight: wOut, outputs: v, inputs: c, into: &dY, ldDX: c)
        Backward.linearInput(dY, rows: t, ldDY: c, weight: wDown, outputs: c, inputs: f, into: &dA, ldDX: f)
        var dU = [Float](repeating: 0, count: t * 2 * f)
        u.withUnsafeBufferPointer { u in
            dA.withUnsafeBufferPointer { dA in
                dU.withUnsafeMutableBufferPointer { dU in
                    for r in 0..<t {
                        let row = u.baseAddress! + r * 2 * f
                        let dRow = dU.baseAddress! + r * 2 * f
                        Backward.swiglu(
                            gate: row, up: row + f, count: f, dOut: dA.baseAddress! + r * f,
                            dGate: dRow, dUp: dRow + f)
                    }
                }
            }
        }
        var dH = [Float](repeating: 0, count: t * c)
        var dWIn = [Float](repeating: 0, count: 2 * f * c)
        Backward.linearInput(dU, rows: t, ldDY: 2 * f, weight: wIn, outputs: 2 * f, inputs: c, into: &dH, ldDX: c)
        Backward.linearWeight(dU, rows: t, ldDY: 2 * f, input: h, ldx: c, outputs: 2 * f, inputs: c, into: &dWIn)
        var dX = dY  // the residual path, plus the norm's gradient
        Backward.rmsNorm(
            x, rows: t, width: c, ldx: c, weight: norm, eps: eps, dY: dH, ldDY: c,
            dX: &dX, ldDX: c, accumulate: true, dWeight: nil)

        let xd = x.map(Double.init)
        let wInD = wIn.map(Double.init)
        expectClose(dX, numericGradient(of: x) { loss($0, wInD) }, "dX")
        expectClose(dWIn, numericGradient(of: wIn) { loss(xd, $0) }, "dW_in")
    }
}
