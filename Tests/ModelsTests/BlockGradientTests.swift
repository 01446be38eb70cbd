import Foundation
import TensorCore
import Testing

@testable import Models

/// Each block's gradient against central finite differences of its own forward, for the
/// scalar loss `L = ⟨output, dOut⟩` with a random `dOut`.
@Suite struct BlockGradientTests {
    /// Central differences in double of a float function: step `h`, `L(x + h) − L(x − h)` over `2h`.
    static func numeric(_ x: inout [Float], _ i: Int, h: Float = 1e-2, loss: ([Float]) -> Double) -> Double {
        let saved = x[i]
        x[i] = saved + h
        let plus = loss(x)
        x[i] = saved - h
        let minus = loss(x)
        x[i] = saved
        return (plus - minus) / Double(2 * h)
    }

    static func random(_ count: Int, _ generator: inout SplitMix64, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in Float.random(in: -scale...scale, using: &generator) }
    }

    @Test(arguments: [TransformerConfig.FeedForwardKind.swiglu, .geluTanh, .gegluTanh])
    func feedForwardActivation(_ kind: TransformerConfig.FeedForwardKind) {
        var generator = SplitMix64(seed: 7)
        let block = FeedForwardActivation(kind: kind, size: 24)
        var pre = Self.random(block.inputWidth, &generator, scale: 2)
        let dHidden = Self.random(block.size, &generator)
        func loss(_ x: [Float]) -> Double {
            var row = x
            row.withUnsafeMutableBufferPointer { block.forward($0.baseAddress!) }
            return zip(row.prefix(block.size), dHidden).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var analytic = [Float](repeating: 0, count: block.inputWidth)
        block.backward(pre: pre, dHidden: dHidden, into: &analytic)
        var worst = 0.0
        for i in 0..<block.inputWidth {
            worst = max(worst, abs(Self.numeric(&pre, i, loss: loss) - Double(analytic[i])))
        }
        #expect(worst < 2e-3, "\(kind): largest difference \(worst)")
    }

    @Test(arguments: [TransformerConfig.NormKind.rms, .layer])
    func normalization(_ kind: TransformerConfig.NormKind) {
        var generator = SplitMix64(seed: 11)
        let width = 20
        let rows = 3
        let block = Normalization(kind: kind, width: width, epsilon: 1e-5)
        var x = Self.random(rows * width, &generator, scale: 2)
        var weightValues = Self.random(width, &generator)
        let bias = kind == .layer ? Tensor(shape: [width], values: Self.random(width, &generator)) : nil
        let dY = Self.random(rows * width, &generator)
        func loss(_ x: [Float], _ weights: [Float]) -> Double {
            var y = [Float](repeating: 0, count: x.count)
            let weight = Tensor(shape: [width], values: weights)
            y.withUnsafeMutableBufferPointer { block.forward(x, rows: rows, weight: weight, bias: bias, into: $0.baseAddress!) }
            return zip(y, dY).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var dX = [Float](repeating: 0, count: x.count)
        let dWeight = Tensor(zeros: [width])
        block.backward(
            x, rows: rows, weight: Tensor(shape: [width], values: weightValues), dY: dY, into: &dX,
            accumulate: false, dWeight: dWeight)
        var worst = 0.0
        let weights = weightValues
        for i in 0..<x.count {
            worst = max(worst, abs(Self.numeric(&x, i, h: 1e-3) { loss($0, weights) } - Double(dX[i])))
        }
        let input = x
        for i in 0..<width {
            worst = max(worst, abs(Self.numeric(&weightValues, i, h: 1e-3) { loss(input, $0) } - Double(dWeight.pointer[i])))
        }
        #expect(worst < 2e-3, "\(kind): largest difference \(worst)")
    }

    struct AttentionCase: Sendable, CustomTestStringConvertible {
        let window: Int?, past: Int, headNorms: Bool
        var testDescription: String { "window \(window.map(String.init) ?? "none"), past \(past), head norms \(headNorms)" }
    }

    /// Self-attention (grouped queries, RoPE, with and without a window of 3 with its own RoPE,
    /// per-head q/k norms, a cached past) on the tiny Llama's shapes: `∂L/∂qkv` before the norms
    /// and RoPE, against differences of the forward pass.
    @Test(arguments: [
        AttentionCase(window: nil, past: 0, headNorms: false), AttentionCase(window: 3, past: 0, headNorms: true),
        AttentionCase(window: nil, past: 2, headNorms: true), AttentionCase(window: 3, past: 3, headNorms: false),
    ])
    func selfAttention(_ test: AttentionCase) throws {
        var config = try ModelLoader.transformer(huggingFace: TinyReference.folder("tiny-llama")).config
        if let window = test.window {
            config.slidingWindow = .init(
                size: window, localLayers: [0],
                inverseFrequencies: RotaryEmbedding.standard(headDim: config.headDim, base: 100))
        }
        let block = SelfAttention(config)
        let scratch = ScratchPool()
        let n = 5
        let width = block.fusedWidth
        let normed = block.queryWidth + block.keyValueWidth
        var generator = SplitMix64(seed: 13)
        var qkv = Self.random(n * width, &generator)
        let pastRows = Self.random(max(1, test.past) * width, &generator)
        let dOut = Self.random(n * block.queryWidth, &generator)
        let queryNorm = Tensor(shape: [config.headDim], values: Self.random(config.headDim, &generator).map { 1 + 0.3 * $0 })
        let keyNorm = Tensor(shape: [config.headDim], values: Self.random(config.headDim, &generator).map { 1 + 0.3 * $0 })

        /// The forward pass from fresh caches holding the past: (output, q and k before the
        /// norms, qkv after them and RoPE, the caches).
        func run(_ values: [Float]) -> (out: Tensor, preNorm: Tensor, recorded: Tensor, caches: [KVCache]) {
            let caches = [KVCache(config: config, capacity: test.past + n)]
            if test.past > 0 {
                let past = Tensor(shape: [test.past, width], values: Array(pastRows.prefix(test.past * width)))
                let angles = block.angleTables(
                    rows: test.past, sequences: [Array(0..<test.past)], starts: [0],
                    caches: caches, scratch: scratch)
                block.storeKeysAndValues(
                    past, layer: 0, sequences: [Array(0..<test.past)], starts: [0], caches: caches,
                    angles: angles)
                caches[0].advance(by: test.past)
            }
            let x = Tensor(shape: [n, width], values: values)
            let preNorm = Tensor(zeros: [n, normed])
            for r in 0..<n { (preNorm.pointer + r * normed).update(from: x.pointer + r * width, count: normed) }
            if test.headNorms { block.normalizeHeads(x, rows: n, queryNorm: queryNorm, keyNorm: keyNorm) }
            let sequences = [Array(0..<n)]
            let angles = block.angleTables(rows: n, sequences: sequences, starts: [0], caches: caches, scratch: scratch)
            block.storeKeysAndValues(x, layer: 0, sequences: sequences, starts: [0], caches: caches, angles: angles)
            let out = Tensor(zeros: [n, block.queryWidth])
            block.attend(x, layer: 0, sequences: sequences, starts: [0], caches: caches, into: out, scratch: scratch)
            return (out, preNorm, x, caches)
        }
        func loss(_ values: [Float]) -> Double {
            zip(run(values).out.scalars, dOut).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let forward = run(qkv)
        let dQKV = Tensor(zeros: [n, width])
        block.backward(
            qkv: forward.recorded, layer: 0, sequences: [Array(0..<n)], starts: [0],
            caches: test.past > 0 ? forward.caches : nil, pastLengths: [test.past],
            dAttention: Tensor(shape: [n, block.queryWidth], values: dOut), into: dQKV, scratch: scratch)
        if test.headNorms {
            block.normalizeHeadsBackward(forward.preNorm, queryNorm: queryNorm, keyNorm: keyNorm, into: dQKV)
        }
        var worst = 0.0
        var largest = 0.0
        for i in 0..<qkv.count {
            worst = max(worst, abs(Self.numeric(&qkv, i, h: 1e-2, loss: loss) - Double(dQKV.pointer[i])))
            largest = max(largest, abs(Double(dQKV.pointer[i])))
        }
        #expect(largest > 0.1, "the gradient is not trivially zero")
        #expect(worst < 2e-3, "\(test): largest difference \(worst)")
    }
}
