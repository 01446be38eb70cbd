import TensorCore

/// Float values quantized to GGML block formats, as ggml's reference quantizers
/// (`quantize_row_*_ref`, gguf-py's `quants.py`) do, bit for bit: so that an edited tensor can
/// be written back in its source's type. The formats with one scale (and minimum) per block of
/// 32; the K-quants choose their scales by a search this does not reproduce.
public enum Quantize {
    /// The formats ``quantize(_:as:)`` writes.
    public static let formats: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0]

    /// The blocks of `values` (a whole number of blocks of 32) in `type`, or nil for a format
    /// not in ``formats``.
    public static func quantize(_ values: [Float], as type: GGMLType) -> [UInt8]? {
        guard formats.contains(type), values.count % 32 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(values.count / 32 * type.bytesPerBlock)
        values.withUnsafeBufferPointer { all in
            for start in stride(from: 0, to: all.count, by: 32) {
                let x = UnsafeBufferPointer(rebasing: all[start..<(start + 32)])
                switch type {
                case .q8_0: q8_0(x, into: &out)
                case .q4_0: symmetric(x, levels: 16, into: &out)
                case .q5_0: symmetric(x, levels: 32, into: &out)
                case .q4_1: offset(x, levels: 16, into: &out)
                default: offset(x, levels: 32, into: &out)
                }
            }
        }
        return out
    }

    private static func appendF16(_ value: Float, to out: inout [UInt8]) {
        let bits = HalfPrecision.floatToF16(value)
        out.append(UInt8(truncatingIfNeeded: bits))
        out.append(UInt8(truncatingIfNeeded: bits >> 8))
    }

    /// `d = amax / 127`, `q = round(x / d)` (half away from zero).
    private static func q8_0(_ x: UnsafeBufferPointer<Float>, into out: inout [UInt8]) {
        let amax = x.reduce(Float(0)) { max($0, abs($1)) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        appendF16(d, to: &out)
        for v in x { out.append(UInt8(bitPattern: Int8((v * id).rounded(.toNearestOrAwayFromZero)))) }
    }

    /// Q4_0 / Q5_0: `d = m / −(levels/2)` for the value `m` of largest magnitude,
    /// `q = trunc(x / d + levels/2 + 0.5)` clamped to the levels.
    private static func symmetric(_ x: UnsafeBufferPointer<Float>, levels: Int, into out: inout [UInt8]) {
        var m: Float = 0
        for v in x where abs(v) > abs(m) { m = v }
        let d = m / -Float(levels / 2)
        let id: Float = d == 0 ? 0 : 1 / d
        let q = x.map { UInt8(min(Float(levels - 1), max(0, (($0 * id) + (Float(levels / 2) + 0.5)).rounded(.towardZero)))) }
        appendF16(d, to: &out)
        pack(q, fifthBits: levels == 32, into: &out)
    }

    /// Q4_1 / Q5_1: `d = (max − min) / (levels − 1)`, `q = trunc((x − min) / d + 0.5)` clamped.
    private static func offset(_ x: UnsafeBufferPointer<Float>, levels: Int, into out: inout [UInt8]) {
        let lo = x.min()!
        let hi = x.max()!
        let d = (hi - lo) / Float(levels - 1)
        let id: Float = d == 0 ? 0 : 1 / d
        let q = x.map { UInt8(min(Float(levels - 1), max(0, (($0 - lo) * id + 0.5).rounded(.towardZero)))) }
        appendF16(d, to: &out)
        appendF16(lo, to: &out)
        pack(q, fifthBits: levels == 32, into: &out)
    }

    /// Low nibbles of values `j` and `j + 16` share byte `j`; the fifth bits, if any, come first
    /// as a little-endian 32-bit mask (bit `j` for value `j`).
    private static func pack(_ q: [UInt8], fifthBits: Bool, into out: inout [UInt8]) {
        if fifthBits {
            var mask: UInt32 = 0
            for (j, v) in q.enumerated() where v & 0x10 != 0 { mask |= 1 << UInt32(j) }
            for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: mask >> UInt32(8 * k))) }
        }
        for j in 0..<16 { out.append((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4)) }
    }
}
