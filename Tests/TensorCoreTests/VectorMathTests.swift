import Foundation
import Testing
import TensorCore

@Suite struct VectorMathTests {
    @Test func vectorExpMatchesLibmWithinFewUlp() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88.5 {
            var lanes = SIMD16<Float>()
            for j in 0..<16 { lanes[j] = x + Float(j) * 0.0007 }
            let e = VectorMath.exp(lanes)
            for j in 0..<16 {
                let reference = expf(lanes[j])
                worst = max(worst, abs(e[j] - reference) / reference)
            }
            x += 0.0173
        }
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
        var worst: Float = 0
        var x: Float = -87
        while x <= 0 {
            var lanes = SIMD16<Float>()
            for j in 0..<16 { lanes[j] = min(0, x + Float(j) * 0.0007) }
            let e = VectorMath.expNonPositive(lanes)
            for j in 0..<16 {
                let reference = expf(lanes[j])
                worst = max(worst, abs(e[j] - reference) / reference)
            }
            x += 0.0173
        }
        #expect(worst < 4 * Float.ulpOfOne, "worst relative error \(worst)")
        let floor = VectorMath.expNonPositive(SIMD16<Float>(repeating: -.infinity))[0]
        #expect(floor >= 0 && floor < 1e-37)
        #expect(VectorMath.expNonPositive(SIMD16<Float>(repeating: 0))[0] == 1)
    }
}
