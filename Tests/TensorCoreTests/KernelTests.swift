import Foundation
import TensorCore
import Testing

/// Kernels against naive twins that accumulate in Double.
@Suite struct KernelTests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in rng.nextUnit() * 2 - 1 }
    }

    @Test(arguments: [(1, 576, 1536), (1, 17, 33), (3, 64, 96), (40, 576, 192)])
    func linearMatchesNaive(m: Int, k: Int, n: Int) {
        let x = Tensor(shape: [m, k], values: random(m * k, seed: 1))
        let w = Tensor(shape: [n, k], values: random(n * k, seed: 2))
        let b = Tensor(shape: [n], values: random(n, seed: 3))
        let y = Tensor(zeros: [m, n])
        MatMul.linear(x.pointer, rows: m, ldx: k, weight: w, bias: b, into: y.pointer, ldy: n)
        for r in 0..<m {
            for j in 0..<n {
                var s = Double(b[j])
                for i in 0..<k { s += Double(x[r * k + i]) * Double(w[j * k + i]) }
                #expect(abs(Double(y[r * n + j]) - s) <= 1e-5 * sqrt(Double(k)) + 1e-5 * abs(s))
            }
        }
    }

    @Test(arguments: [1, 3])
    func accumulatingLinearAddsToTheOutput(m: Int) {
        let k = 70
        let n = 45
        let x = Tensor(shape: [m, k], values: random(m * k, seed: 12))
        let w = Tensor(shape: [n, k], values: random(n * k, seed: 13))
        let y = Tensor(shape: [m, n], values: random(m * n, seed: 14))
        let fresh = Tensor(zeros: [m, n])
        MatMul.linear(x.pointer, rows: m, ldx: k, weight: w, into: fresh.pointer, ldy: n)
        let before = y.scalars
        MatMul.linear(x.pointer, rows: m, ldx: k, weight: w, into: y.pointer, ldy: n, accumulate: true)
        for i in 0..<(m * n) { #expect(abs(y[i] - (before[i] + fresh[i])) < 1e-5) }
    }

    @Test func rmsNormMatchesNaive() {
        let width = 37
        let x = random(2 * width, seed: 4)
        let w = random(width, seed: 5)
        var y = [Float](repeating: 0, count: 2 * width)
        Kernels.rmsNorm(x, rows: 2, width: width, ldx: width, weight: w, eps: 1e-5, into: &y, ldy: width)
        for r in 0..<2 {
            let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
            let scale = 1 / sqrt(row.map { $0 * $0 }.reduce(0, +) / Double(width) + 1e-5)
            for i in 0..<width { #expect(abs(Double(y[r * width + i]) - row[i] * scale * Double(w[i])) < 1e-5) }
        }
    }

    @Test func layerNormMatchesNaive() {
        let width = 50
        let x = random(width, seed: 6).map { $0 * 3 + 1 }
        let w = random(width, seed: 7)
        let b = random(width, seed: 8)
        var y = [Float](repeating: 0, count: width)
        Kernels.layerNorm(x, rows: 1, width: width, ldx: width, weight: w, bias: b, eps: 1e-5, into: &y, ldy: width)
        let mean = x.map(Double.init).reduce(0, +) / Double(width)
        let variance = x.map { (Double($0) - mean) * (Double($0) - mean) }.reduce(0, +) / Double(width)
        for i in 0..<width {
            let expected = (Double(x[i]) - mean) / sqrt(variance + 1e-5) * Double(w[i]) + Double(b[i])
            #expect(abs(Double(y[i]) - expected) < 1e-5)
        }
    }

    @Test func softmaxMatchesNaiveAndReturnsLogSumExp() {
        var x = random(41, seed: 9).map { $0 * 20 }
        let naive = x.map(Double.init)
        let lse = log(naive.map { exp($0) }.reduce(0, +))
        let returned = Kernels.softmax(&x, count: x.count)
        #expect(abs(Double(returned) - lse) < 1e-5)
        for i in 0..<x.count { #expect(abs(Double(x[i]) - exp(naive[i] - lse)) < 1e-6) }
        #expect(abs(Double(Kernels.logSumExp(naive.map(Float.init), count: naive.count)) - lse) < 1e-5)
    }

    @Test func swigluAndGeluMatchTheirDefinitions() {
        let g = random(35, seed: 10).map { $0 * 6 }
        let u = random(35, seed: 11)
        var out = [Float](repeating: 0, count: 35)
        Kernels.swiglu(gate: g, up: u, count: 35, into: &out)
        var gelu = g
        Kernels.geluTanh(&gelu, count: gelu.count)
        for i in 0..<35 {
            let gi = Double(g[i])
            #expect(abs(Double(out[i]) - gi / (1 + exp(-gi)) * Double(u[i])) < 1e-5)
            let expected = 0.5 * gi * (1 + tanh(sqrt(2 / Double.pi) * (gi + 0.044715 * gi * gi * gi)))
            #expect(abs(Double(gelu[i]) - expected) < 1e-5)
        }
    }

    @Test func ropeRotatesPairsHalfAHeadApart() {
        let d = 8
        let rope = RotaryEmbedding(inverseFrequencies: RotaryEmbedding.standard(headDim: d, base: 10000), headDim: d)
        var cos = [Float](repeating: 0, count: d / 2)
        var sin = cos
        rope.angles(position: 3, cos: &cos, sin: &sin)
        var v: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        let original = v
        rope.apply(&v, heads: 1, cos: cos, sin: sin)
        for i in 0..<(d / 2) {
            let angle = 3 * pow(10000, -Double(2 * i) / Double(d))
            let a = Double(original[i])
            let b = Double(original[i + d / 2])
            #expect(abs(Double(v[i]) - (a * Foundation.cos(angle) - b * Foundation.sin(angle))) < 1e-5)
            #expect(abs(Double(v[i + d / 2]) - (b * Foundation.cos(angle) + a * Foundation.sin(angle))) < 1e-5)
        }
    }

    @Test func llama3ScalingMatchesTransformers() {
        // transformers _compute_llama3_parameters for D = 16, θ = 10000, factor 8, low 1, high 4, original 32.
        let scaled = RotaryEmbedding.llama3(
            headDim: 16, base: 10000, factor: 8, lowFrequencyFactor: 1,
            highFrequencyFactor: 4, originalMaxPositions: 32)
        let plain = RotaryEmbedding.standard(headDim: 16, base: 10000)
        // Wavelengths 2π/invFreq: 6.3, 19.9, 62.8, …; the thresholds are 32/4 = 8 and 32/1 = 32.
        #expect(scaled[0] == plain[0])  // short wavelength: kept
        #expect(scaled[1] < plain[1] && scaled[1] > plain[1] / 8)  // smoothed band in between
        #expect(abs(scaled[2] - plain[2] / 8) < 1e-9)  // long wavelength: divided by the factor
        #expect(abs(scaled[7] - plain[7] / 8) < 1e-9)
    }

    @Test func parallelForVisitsEveryChunkOnceAndNestsSerially() {
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 1000)
        counts.initialize(repeating: 0, count: 1000)
        defer { counts.deallocate() }
        parallelFor(10) { outer in
            parallelFor(100) { inner in counts[outer * 100 + inner] += 1 }
        }
        #expect((0..<1000).allSatisfy { counts[$0] == 1 })
    }

    @Test func parallelForRunsManyShortLoopsFromConcurrentCallers() {
        // Three threads start thousands of loops at once: one holds the workers at a time, the
        // others run serially; every chunk of every loop runs exactly once either way.
        let callers = 3
        let chunks = 37
        let rounds = 3000
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: callers * chunks)
        counts.initialize(repeating: 0, count: callers * chunks)
        defer { counts.deallocate() }
        let address = UInt(bitPattern: counts)
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            let counts = UnsafeMutablePointer<Int>(bitPattern: address)!
            for round in 0..<rounds {
                parallelFor(chunks, dynamic: round % 2 == 1) { i in counts[caller * chunks + i] += 1 }
            }
        }
        #expect((0..<(callers * chunks)).allSatisfy { counts[$0] == rounds })
    }
}
