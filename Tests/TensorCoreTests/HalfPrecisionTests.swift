import TensorCore
import Testing

@Suite struct HalfPrecisionTests {
    @Test func f16RoundTripsEveryBitPattern() {
        for bits in 0...UInt16.max {
            let f = HalfPrecision.f16ToFloat(bits)
            if f.isNaN { continue }
            #expect(HalfPrecision.floatToF16(f) == bits)
            #expect(Float(Float16(bitPattern: bits)) == f)
        }
    }

    @Test func f16RoundsToNearestEven() {
        for v: Float in [1.0009765625 / 2 + 0.5, 65504, 65520, 1e-8, -3.14159, 6.1e-5, 2.98e-8] {
            #expect(HalfPrecision.floatToF16(v) == Float16(v).bitPattern, "\(v)")
        }
    }

    @Test func bf16MatchesTopHalfOfFloat() {
        #expect(HalfPrecision.bf16ToFloat(0x3F80) == 1)
        #expect(HalfPrecision.floatToBF16(1.00390625) == 0x3F80)  // tie to even
        #expect(HalfPrecision.floatToBF16(1.01171875) == 0x3F82)  // tie to even (up)
        #expect(HalfPrecision.bf16ToFloat(HalfPrecision.floatToBF16(-2.5)) == -2.5)
    }
}
