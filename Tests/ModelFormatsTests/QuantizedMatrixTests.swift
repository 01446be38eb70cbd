import Foundation
import TensorCore
import Testing

@testable import ModelFormats

/// ``QuantizedMatrix`` and ``WeightMatrix`` against the float32 matrix that ModelFormats'
/// bit-exact dequantizers make of the same blocks.
@Suite struct QuantizedMatrixTests {
    /// A matrix of `rows` rows in `formats` (consecutive segments of `rows / formats.count`
    /// rows), its bytes in an `NSData` that the matrix keeps alive; and its float32 values.
    static func matrix(_ formats: [QuantizedFormat], rows: Int, columns: Int, seed: UInt64) throws -> (QuantizedMatrix, [Float]) {
        var segments: [QuantizedMatrix.Segment] = []
        var owners: [AnyObject] = []
        var values: [Float] = []
        for (i, format) in formats.enumerated() {
            let segmentRows = rows / formats.count
            let type = try #require(GGMLType(rawValue: UInt32(format.rawValue)))
            let bytes = QuantizedKernelTests.randomBlocks(format, count: segmentRows * columns / format.blockSize, seed: seed + UInt64(i))
            let data = NSData(bytes: bytes, length: bytes.count)
            var floats = [Float](repeating: 0, count: segmentRows * columns)
            floats.withUnsafeMutableBufferPointer { type.dequantize(data.bytes, into: $0.baseAddress!, elementCount: $0.count) }
            segments.append(.init(rows: segmentRows, format: format, bytes: data.bytes))
            owners.append(data)
            values += floats
        }
        return (QuantizedMatrix(columns: columns, segments: segments, owners: owners), values)
    }

    /// Σ a·b in float64, and Σ |a·b| (the scale of its rounding).
    static func exact(_ pairs: [(Float, Float)]) -> (sum: Double, scale: Double) {
        pairs.reduce((0.0, 0.0)) { ($0.0 + Double($1.0) * Double($1.1), $0.1 + abs(Double($1.0) * Double($1.1))) }
    }

    /// The C dequantizer that the prefill and gradient products use is bit-exact with the Swift one.
    @Test(arguments: QuantizedFormat.allCases)
    func dequantizationIsBitExact(_ format: QuantizedFormat) throws {
        let (matrix, values) = try Self.matrix([format], rows: 6, columns: 512, seed: 40)
        let dequantized = matrix.dequantized()
        #expect(dequantized.shape == [6, 512])
        #expect(dequantized.scalars.map(\.bitPattern) == values.map(\.bitPattern))
        var row = [Float](repeating: 0, count: 512)
        row.withUnsafeMutableBufferPointer { matrix.dequantize(rows: 4..<5, into: $0.baseAddress!) }
        #expect(row == Array(values[(4 * 512)..<(5 * 512)]))
    }

    /// Forward products (the dot-product path for ≤ 4 rows, tiles and BLAS beyond) and input
    /// gradients on a matrix of mixed formats, against float64 products of the float32 values.
    /// Bound: the int8 activations round each element by half a step (1/254 of its block's
    /// largest magnitude); 1% of the absolute sum covers it.
    @Test(arguments: [1, 3, 4, 5, 40])
    func productsMatchTheDequantizedMatrix(rows m: Int) throws {
        let (n, k) = (96, 512)
        let (matrix, w) = try Self.matrix([.q4_K, .q4_1, .q6_K, .q8_0], rows: n, columns: k, seed: 7)
        var rng = SplitMix64(seed: UInt64(m))
        let x = (0..<(m * k)).map { _ in 2 * rng.nextUnit() - 1 }
        var y = [Float](repeating: 1, count: m * n)
        x.withUnsafeBufferPointer { xs in
            y.withUnsafeMutableBufferPointer { matrix.multiply(xs.baseAddress!, rows: m, ldx: k, into: $0.baseAddress!, ldy: n) }
        }
        for i in 0..<m {
            for r in 0..<n {
                let (exact, scale) = Self.exact((0..<k).map { (x[i * k + $0], w[r * k + $0]) })
                #expect(abs(Double(y[i * n + r]) - exact) <= 0.01 * scale + 1e-6, "row \(i), output \(r): \(y[i * n + r]) against \(exact)")
            }
        }
        // dX = dY · W, exact up to float32 summation (dequantized tiles and BLAS).
        let dY = (0..<(m * n)).map { _ in 2 * rng.nextUnit() - 1 }
        var dX = [Float](repeating: 0.5, count: m * k)
        dY.withUnsafeBufferPointer { d in
            dX.withUnsafeMutableBufferPointer {
                matrix.multiplyTransposed(d.baseAddress!, rows: m, ldDY: n, into: $0.baseAddress!, ldDX: k, accumulate: true)
            }
        }
        for i in 0..<m {
            for c in 0..<k {
                let (exact, scale) = Self.exact((0..<n).map { (dY[i * n + $0], w[$0 * k + c]) })
                #expect(abs(Double(dX[i * k + c]) - 0.5 - exact) <= 1e-5 * scale + 1e-6)
            }
        }
    }

    /// Segments of every other row (how GGUF's q/k interleaving is undone without a copy)
    /// read and multiply the rows they name.
    @Test func stridedSegmentsReadTheirRows() throws {
        let format = QuantizedFormat.q8_0
        let k = 64
        let rowBytes = k / 32 * format.bytesPerBlock
        let bytes = QuantizedKernelTests.randomBlocks(format, count: 8 * k / 32, seed: 11)
        let data = NSData(bytes: bytes, length: bytes.count)
        let type = try #require(GGMLType(rawValue: UInt32(format.rawValue)))
        var stored = [Float](repeating: 0, count: 8 * k)
        stored.withUnsafeMutableBufferPointer { type.dequantize(data.bytes, into: $0.baseAddress!, elementCount: $0.count) }
        // Rows 0, 2, 4, 6, then 1, 3, 5, 7 of the stored matrix.
        let matrix = QuantizedMatrix(
            columns: k,
            segments: [
                .init(rows: 4, format: format, bytes: data.bytes, rowStep: 2),
                .init(rows: 4, format: format, bytes: data.bytes + rowBytes, rowStep: 2),
            ],
            owners: [data])
        let order = [0, 2, 4, 6, 1, 3, 5, 7]
        #expect(matrix.dequantized().scalars == order.flatMap { stored[($0 * k)..<(($0 + 1) * k)] })
        let x = (0..<k).map { Float($0 % 7) - 3 }
        var y = [Float](repeating: 0, count: 8)
        x.withUnsafeBufferPointer { xs in
            y.withUnsafeMutableBufferPointer { matrix.multiply(xs.baseAddress!, rows: 1, ldx: k, into: $0.baseAddress!, ldy: 8) }
        }
        for (i, r) in order.enumerated() {
            let exact = (0..<k).reduce(Float(0)) { $0 + x[$1] * stored[r * k + $1] }
            #expect(abs(y[i] - exact) <= 1e-4 * max(1, abs(exact)))
        }
    }

    /// A quantized weight becomes float32 on first write, and goes back to its blocks.
    @Test func writesMaterialiseAndRestoreGoesBack() throws {
        let (blocks, values) = try Self.matrix([.q4_1], rows: 8, columns: 64, seed: 3)
        let weight = WeightMatrix(blocks)
        #expect(weight.isQuantized && weight.shape == [8, 64])
        #expect(weight.scalars == values)
        let writable = weight.values()
        #expect(!weight.isQuantized && writable.scalars == values)
        writable.pointer[5] += 1
        #expect(weight.scalars[5] == values[5] + 1)
        weight.restoreBlocks()
        #expect(weight.isQuantized && weight.scalars == values)
    }
}
