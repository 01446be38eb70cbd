import Foundation
import TensorCore
import Testing

@Suite struct VectorMathTests {
    /// The largest relative error of `f` against `expf` over `from...to`, 16 lanes at a time.
    func worstRelativeError(from: Float, to: Float, _ f: (SIMD16<Float>) -> SIMD16<Float>) -> Float {
        var worst: Float = 0
        var x = from
        while x <= to {
            var lanes = SIMD16<Float>()
            for j in 0..<16 { lanes[j] = min(to, x + Float(j) * 0.0007) }
            let e = f(lanes)
            for j in 0..<16 {
                let reference = expf(lanes[j])
                worst = max(worst, abs(e[j] - reference) / reference)
            }
            x += 0.0173
        }
        return worst
    }

    @Test func vectorExpMatchesLibmWithinFewUlp() {
        let worst = worstRelativeError(from: -87, to: 88.5) { VectorMath.exp($0) }
        #expect(worst < 4 * Float.ulpOfOne, "worst relative error \(worst)")
    }

    @Test func vectorExpHandlesExtremes() {
        let e = VectorMath.exp(SIMD16<Float>(repeating: -1000))
        #expect(e[0] == 0)
        #expect(VectorMath.exp(SIMD16<Float>(repeating: 1000))[0] == .infinity)
        #expect(VectorMath.exp(SIMD16<Float>(repeating: 0))[0] == 1)
        #expect(VectorMath.exp(SIMD16<Float>(repeating: -.infinity))[0] == 0)
    }

    @Test func nonPositiveExpMatchesLibmWithinFewUlp() {
        let worst = worstRelativeError(from: -87, to: 0) { VectorMath.expNonPositive($0) }
        #expect(worst < 4 * Float.ulpOfOne, "worst relative error \(worst)")
        let floor = VectorMath.expNonPositive(SIMD16<Float>(repeating: -.infinity))[0]
        #expect(floor >= 0 && floor < 1e-37)
        #expect(VectorMath.expNonPositive(SIMD16<Float>(repeating: 0))[0] == 1)
    }
}
