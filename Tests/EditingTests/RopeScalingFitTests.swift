import Foundation
import TensorCore
import Testing

@testable import Editing

/// Llama 3 `rope_scaling` recovered from llama.cpp's `rope_freqs.weight` divisors.
@Suite struct RopeScalingFitTests {
    /// The divisors llama.cpp's converter stores (`LlamaModel.generate_extra_tensors`, float64
    /// then float32) and the frequencies IBKE's GGUF loader derives from them.
    static func ggufDivisors(
        headDim: Int, theta: Double, factor: Double, low: Double, high: Double, original: Double
    )
        -> (divisors: [Double], frequencies: [Float])
    {
        let standard = RotaryEmbedding.standard(headDim: headDim, base: theta)
        let divisors = (0..<(headDim / 2)).map { i -> Float in
            let wavelength = 2 * Double.pi * pow(theta, Double(2 * i) / Double(headDim))
            if wavelength < original / high { return 1 }
            if wavelength > original / low { return Float(factor) }
            let smooth = (original / wavelength - low) / (high - low)
            return Float(1 / ((1 - smooth) / factor + smooth))
        }
        return (divisors.map(Double.init), zip(standard, divisors).map { $0 / $1 })
    }

    @Test func llama31ParametersComeBackExactly() throws {
        let (divisors, frequencies) = Self.ggufDivisors(headDim: 128, theta: 500_000, factor: 8, low: 1, high: 4, original: 8192)
        let fit = RopeScalingFit.fit(divisors: divisors, headDim: 128, theta: 500_000, frequencies: frequencies)
        #expect(fit == RopeScalingFit.Parameters(factor: 8, highFrequencyFactor: 4, originalMaxPositions: 8192))
    }

    @Test func aBandOfOneFrequencyGetsEquivalentParameters() throws {
        // tiny-llama.gguf's scaling: one of its 8 frequencies lies in the smoothed band.
        let (divisors, frequencies) = Self.ggufDivisors(headDim: 16, theta: 10_000, factor: 8, low: 1, high: 4, original: 32)
        let fit = try #require(RopeScalingFit.fit(divisors: divisors, headDim: 16, theta: 10_000, frequencies: frequencies))
        #expect(fit.factor == 8)
    }

    @Test func divisorsThatAreNotLlama3ScalingAreRefused() {
        let divisors: [Double] = [1, 3, 1.5, 8, 2, 8, 8, 8]
        let frequencies = zip(RotaryEmbedding.standard(headDim: 16, base: 10_000), divisors).map { $0 / Float($1) }
        #expect(RopeScalingFit.fit(divisors: divisors, headDim: 16, theta: 10_000, frequencies: frequencies) == nil)
    }
}
