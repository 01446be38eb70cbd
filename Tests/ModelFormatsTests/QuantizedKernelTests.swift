import Foundation
import TensorCore
import Testing

@testable import ModelFormats

/// The quantized dot products (each instruction set the CPU has: AVX-512, AVX2, portable C) against
/// dequantizing the same blocks with ModelFormats' bit-exact dequantizers and multiplying in
/// float64.
@Suite struct QuantizedKernelTests {
    /// Random blocks of `format` with sane fp16 scales (each block's d and dmin in ±2⁻⁴).
    static func randomBlocks(_ format: QuantizedFormat, count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var bytes = (0..<(count * format.bytesPerBlock)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        func half(_ value: Float) -> (UInt8, UInt8) {
            let bits = Float16(value).bitPattern
            return (UInt8(bits & 0xFF), UInt8(bits >> 8))
        }
        let scaleOffsets: [Int] =
            switch format {
            case .f16, .bf16: []
            case .q4_0, .q5_0, .q8_0: [0]
            case .q4_1, .q4_K, .q5_K: [0, 2]
            case .q6_K: [208]
            }
        for b in 0..<count {
            for offset in scaleOffsets {
                let (lo, hi) = half((2 * rng.nextUnit() - 1) / 16)
                bytes[b * format.bytesPerBlock + offset] = lo
                bytes[b * format.bytesPerBlock + offset + 1] = hi
            }
        }
        if format == .f16 || format == .bf16 {
            for i in stride(from: 0, to: bytes.count, by: 2) {
                let value = 2 * rng.nextUnit() - 1
                let bits = format == .f16 ? Float16(value).bitPattern : UInt16(value.bitPattern >> 16)
                bytes[i] = UInt8(bits & 0xFF)
                bytes[i + 1] = UInt8(bits >> 8)
            }
        }
        return bytes
    }

    @Test(arguments: QuantizedFormat.allCases)
    func dotProductsMatchDequantizeThenMultiply(_ format: QuantizedFormat) throws {
        let type = try #require(GGMLType(rawValue: UInt32(format.rawValue)))
        #expect(type.blockSize == format.blockSize && type.bytesPerBlock == format.bytesPerBlock)
        let blocks = format.blockSize == 1 ? 1024 : 4096 / format.blockSize
        let bytes = Self.randomBlocks(format, count: blocks, seed: UInt64(format.rawValue))
        let n = blocks * format.blockSize
        var rng = SplitMix64(seed: 99)
        let x = (0..<n).map { _ in 2 * rng.nextUnit() - 1 }
        var weights = [Float](repeating: 0, count: n)
        bytes.withUnsafeBytes { raw in
            weights.withUnsafeMutableBufferPointer { type.dequantize(raw.baseAddress!, into: $0.baseAddress!, elementCount: n) }
        }
        let exact = zip(weights, x).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let scale = zip(weights, x).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
        let (fast, portable) = bytes.withUnsafeBytes { raw in
            x.withUnsafeBufferPointer { xs in
                (
                    QuantizedKernels.dot(format, row: raw.baseAddress!, xs.baseAddress!, blocks: blocks),
                    QuantizedKernels.portableDot(format, row: raw.baseAddress!, xs.baseAddress!, blocks: blocks)
                )
            }
        }
        #expect(abs(Double(fast) - exact) <= 1e-5 * scale, "\(format): \(fast) against \(exact) (scale \(scale))")
        #expect(abs(Double(portable) - exact) <= 1e-5 * scale, "\(format) portable: \(portable) against \(exact)")
        // Every instruction set this CPU has, with and without the activations' per-32 sums,
        // and a block count that leaves the two-block loops a remainder.
        let sums = (0..<(n / 32)).map { b in x[(32 * b)..<(32 * b + 32)].reduce(0, +) }
        let odd = blocks - 1
        let oddExact = zip(weights, x).prefix(odd * format.blockSize).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        for set in QuantizedKernels.InstructionSet.allCases where set.rawValue <= QuantizedKernels.instructionSet.rawValue {
            bytes.withUnsafeBytes { raw in
                x.withUnsafeBufferPointer { xs in
                    sums.withUnsafeBufferPointer { s in
                        for (count, reference) in [(blocks, exact), (odd, oddExact)] {
                            let plain = QuantizedKernels.dot(format, row: raw.baseAddress!, xs.baseAddress!, blocks: count, using: set)
                            let summed = QuantizedKernels.dot(
                                format, row: raw.baseAddress!, xs.baseAddress!, sums: s.baseAddress!, blocks: count, using: set)
                            #expect(abs(Double(plain) - reference) <= 1e-5 * scale, "\(format) \(set), \(count) blocks: \(plain)")
                            #expect(abs(Double(summed) - reference) <= 1e-5 * scale, "\(format) \(set) with sums: \(summed)")
                        }
                    }
                }
            }
        }
    }

    /// The matrix-vector product is each row's dot product.
    @Test func matrixVectorIsRowByRowDots() {
        let format = QuantizedFormat.q4_K
        let rows = 130
        let columns = 512
        let rowBytes = columns / 256 * format.bytesPerBlock
        let bytes = Self.randomBlocks(format, count: rows * columns / 256, seed: 5)
        var rng = SplitMix64(seed: 6)
        let x = (0..<columns).map { _ in 2 * rng.nextUnit() - 1 }
        var y = [Float](repeating: 0, count: rows)
        bytes.withUnsafeBytes { raw in
            x.withUnsafeBufferPointer { xs in
                y.withUnsafeMutableBufferPointer {
                    QuantizedKernels.matrixVector(
                        format, weights: raw.baseAddress!, rows: rows, columns: columns, xs.baseAddress!,
                        into: $0.baseAddress!)
                }
                // The product takes the activations' per-32 sums once for all rows; the single dot
                // sums them its own way, so the two agree up to float rounding.
                for r in 0..<rows {
                    let dot = QuantizedKernels.dot(format, row: raw.baseAddress! + r * rowBytes, xs.baseAddress!, blocks: 2)
                    #expect(abs(y[r] - dot) <= 1e-5 * max(1, abs(dot)), "row \(r): \(y[r]) against \(dot)")
                }
            }
        }
    }

    /// The integer kernels on quantized activations equal the exact product with the
    /// activations replaced by what their codes stand for (the weights' codes and the
    /// activations' codes multiply exactly; only the final scaling rounds), and stay within the
    /// activations' rounding (half a step per element) of the float product.
    @Test(arguments: QuantizedFormat.allCases.filter(QuantizedKernels.hasIntegerKernel))
    func integerKernelsMatchTheQuantizedActivations(_ format: QuantizedFormat) throws {
        let type = try #require(GGMLType(rawValue: UInt32(format.rawValue)))
        let blocks = 4096 / format.blockSize
        let n = 4096
        let bytes = Self.randomBlocks(format, count: blocks, seed: UInt64(format.rawValue) + 100)
        var rng = SplitMix64(seed: 17)
        let x = (0..<n).map { _ in 2 * rng.nextUnit() - 1 }
        var weights = [Float](repeating: 0, count: n)
        bytes.withUnsafeBytes { raw in
            weights.withUnsafeMutableBufferPointer { type.dequantize(raw.baseAddress!, into: $0.baseAddress!, elementCount: n) }
        }
        let activations = x.withUnsafeBufferPointer { QuantizedKernels.QuantizedActivations($0.baseAddress!, count: n) }
        let xHat = activations.values
        let onCodes = zip(weights, xHat).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let scale = zip(weights, xHat).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
        let exact = zip(weights, x).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rounding = weights.indices.reduce(0.0) { $0 + abs(Double(weights[$1])) * Double(activations.scales[$1 / 32]) / 2 }
        for portable in [false, true] {
            let result = bytes.withUnsafeBytes {
                QuantizedKernels.dot(format, row: $0.baseAddress!, activations, blocks: blocks, portable: portable)
            }
            #expect(abs(Double(result) - onCodes) <= 1e-5 * scale, "\(format) portable \(portable): \(result) against \(onCodes)")
            #expect(abs(Double(result) - exact) <= rounding + 1e-5 * scale, "\(format): \(result) against the float \(exact)")
        }
        for i in 0..<n { #expect(abs(xHat[i] - x[i]) <= activations.scales[i / 32] / 2 * 1.0001) }
    }
}
