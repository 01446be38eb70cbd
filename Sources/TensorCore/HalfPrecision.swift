/// Conversions between IEEE half (F16), bfloat16 (BF16) and Float, bit-exact.
public enum HalfPrecision {
    /// IEEE 754 binary16 bits to Float (exact for every value, subnormals, infinities and NaN).
    @inlinable
    public static func f16ToFloat(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa · 2⁻²⁴, exact in Float.
            let magnitude = Float(mantissa) * 5.9604644775390625e-08
            return sign == 0 ? magnitude : -magnitude
        }
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// Float to IEEE binary16 bits, round-to-nearest-even (as numpy and PyTorch do).
    @inlinable
    public static func floatToF16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF)
        var mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF {  // Inf / NaN
            return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0)
        }
        var e = exponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            mantissa |= 0x80_0000
            let shift = UInt32(14 - e)
            var half = mantissa >> shift
            let rest = mantissa & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if rest > halfway || (rest == halfway && (half & 1) == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(e << 10) | (mantissa >> 13)
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && (half & 1) == 1) { half += 1 }
        e = 0
        return sign | UInt16(truncatingIfNeeded: half)
    }

    /// bfloat16 bits to Float (exact: bf16 is the top half of a float32).
    @inlinable
    public static func bf16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float to bfloat16 bits, round-to-nearest-even; NaN stays NaN.
    @inlinable
    public static func floatToBF16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }
}
