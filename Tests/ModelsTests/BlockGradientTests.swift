import Foundation
import Testing
import TensorCore
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
        let width = 20, rows = 3
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
        block.backward(x, rows: rows, weight: Tensor(shape: [width], values: weightValues), dY: dY, into: &dX,
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
}
