import CQuantKernels
import Foundation

/// A `[rows, columns]` weight matrix kept in GGUF block formats, computed with directly
/// (``QuantizedKernels``) instead of dequantized to float32 at load: the memory and the bytes a
/// decode step reads are the file's.
///
/// The rows come in segments that may differ in format (a fused q/k/v matrix of a Q4_K_M file
/// holds Q4_K and Q6_K rows); each row is whole blocks. The bytes usually lie in a memory-mapped
/// file, which ``owners`` keep alive.
/// `@unchecked Sendable`: every property is `let`; the blocks behind the raw pointers are never
/// written, and ``owners`` are only held to keep them alive.
public final class QuantizedMatrix: @unchecked Sendable {
    /// Consecutive rows in one format.
    /// `@unchecked Sendable`: `bytes` is a raw pointer to blocks that are only read, valid while
    /// the matrix's `owners` live.
    public struct Segment: @unchecked Sendable {
        public let rows: Int
        public let format: QuantizedFormat
        /// The first byte of the segment's first row.
        public let bytes: UnsafeRawPointer
        /// Rows apart in the file from one segment row to the next: 1 for consecutive rows, 2
        /// for every other row (how a permutation such as GGUF's q/k interleaving is undone
        /// without copying).
        public let rowStep: Int

        public init(rows: Int, format: QuantizedFormat, bytes: UnsafeRawPointer, rowStep: Int = 1) {
            precondition(rowStep >= 1, "row step \(rowStep)")
            self.rows = rows
            self.format = format
            self.bytes = bytes
            self.rowStep = rowStep
        }
    }

    public let rows: Int
    public let columns: Int
    public let segments: [Segment]
    /// Whatever keeps ``Segment/bytes`` valid (a mapped file, a copied buffer).
    private let owners: [AnyObject]
    /// Whether products of up to ``dotProductRowLimit`` rows quantize the activations to int8
    /// (llama.cpp's way: the fastest kernels, but each product rounds the activations to 8 bits,
    /// which flips a few percent of near-tied greedy choices) or keep them in float32 (the
    /// float32 path's results up to summation order).
    public let integerActivations: Bool
    /// Per segment: its first row, its row's bytes, the bytes from one of its rows to the next.
    private let starts: [Int], rowBytes: [Int], strides: [Int]

    /// - Precondition: each segment's rows are whole blocks of its format.
    public init(columns: Int, segments: [Segment], owners: [AnyObject], integerActivations: Bool = false) {
        var starts: [Int] = []
        var rowBytes: [Int] = []
        var strides: [Int] = []
        var total = 0
        for s in segments {
            precondition(columns % s.format.blockSize == 0, "\(columns) columns are not whole \(s.format) blocks")
            starts.append(total)
            rowBytes.append(columns / s.format.blockSize * s.format.bytesPerBlock)
            strides.append(rowBytes.last! * s.rowStep)
            total += s.rows
        }
        self.rows = total
        self.columns = columns
        self.segments = segments
        self.owners = owners
        self.integerActivations = integerActivations
        self.starts = starts
        self.rowBytes = rowBytes
        self.strides = strides
    }

    public var shape: [Int] { [rows, columns] }

    /// The bytes of the blocks.
    public var byteCount: Int { zip(segments, rowBytes).reduce(0) { $0 + $1.0.rows * $1.1 } }

    /// Segment index and row within it of matrix row `r`.
    @inline(__always)
    private func locate(_ r: Int) -> (segment: Int, row: Int) {
        var s = segments.count - 1
        while starts[s] > r { s -= 1 }
        return (s, r - starts[s])
    }

    /// The first byte of row `r`, and its format.
    @inline(__always)
    public func row(_ r: Int) -> (bytes: UnsafeRawPointer, format: QuantizedFormat) {
        let (s, i) = locate(r)
        return (segments[s].bytes + i * strides[s], segments[s].format)
    }

    /// Rows `range` as float32, `[count, columns]` at `y`, bit for bit the reference dequantizer's values.
    public func dequantize(rows range: Range<Int>, into y: UnsafeMutablePointer<Float>) {
        for (k, r) in range.enumerated() {
            let (bytes, format) = row(r)
            ibke_dequantize(format.rawValue, bytes, y + k * columns, Int32(columns / format.blockSize))
        }
    }

    /// The whole matrix as float32.
    public func dequantized() -> Tensor {
        let t = Tensor(uninitialized: [rows, columns])
        parallelFor((rows + 63) / 64) { c in
            let range = (c * 64)..<min(rows, (c + 1) * 64)
            dequantize(rows: range, into: t.pointer + range.lowerBound * columns)
        }
        return t
    }

    /// Row chunks that do not cross a segment boundary, for parallel loops.
    private func chunks(of size: Int) -> [Range<Int>] {
        var result: [Range<Int>] = []
        for (s, segment) in segments.enumerated() {
            var start = starts[s]
            let end = start + segment.rows
            while start < end {
                result.append(start..<min(end, start + size))
                start += size
            }
        }
        return result
    }

    /// Up to this many rows of activations use the dot-product kernels (each weight row read
    /// once per call, the activations in cache); more rows dequantize tiles of weight rows and
    /// multiply them with BLAS, which amortises the dequantization over the rows.
    public static let dotProductRowLimit = 4

    /// `y[M, N] (+)= x[M, K] · Wᵀ`, the forward product of a linear layer (``MatMul/linear``).
    public func multiply(
        _ x: UnsafePointer<Float>, rows m: Int, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
        accumulate: Bool = false
    ) {
        guard m > 0 && rows > 0 else { return }
        if m <= Self.dotProductRowLimit {
            multiplyByDots(x, rows: m, ldx: ldx, into: y, ldy: ldy, accumulate: accumulate)
            return
        }
        let tiles = chunks(of: 32)
        let k = columns
        parallelFor(tiles.count, dynamic: true) { t in
            let range = tiles[t]
            let tile = UnsafeMutablePointer<Float>.allocate(capacity: range.count * k)
            defer { tile.deallocate() }
            dequantize(rows: range, into: tile)
            MatMul.gemm(
                transB: true, m: m, n: range.count, k: k, a: x, lda: ldx, b: tile, ldb: k,
                beta: accumulate ? 1 : 0, c: y + range.lowerBound, ldc: ldy)
        }
    }

    /// The dot-product path: with ``integerActivations``, int8 activations (per-32 scales, as
    /// llama.cpp's Q8 blocks) for the formats with integer kernels; float activations otherwise.
    private func multiplyByDots(
        _ x: UnsafePointer<Float>, rows m: Int, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
    ) {
        let k = columns
        let integer =
            integerActivations && k % 32 == 0
            && segments.allSatisfy {
                QuantizedKernels.hasIntegerKernel($0.format) && (k % 256 == 0 || $0.format.blockSize == 32)
            }
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: integer ? m * k : 0)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: integer ? m * k / 32 : 0)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: integer ? m * k / 32 : 0)
        defer {
            codes.deallocate()
            scales.deallocate()
            sums.deallocate()
        }
        if integer {
            for i in 0..<m { ibke_quantize_activations(x + i * ldx, Int32(k), codes + i * k, scales + i * k / 32, sums + i * k / 32) }
        }
        // Float activations: the sums of each 32, which the offset terms of Q4_1 and Q4_K need.
        let floatSums = !integer && k % 32 == 0
        let xsums = UnsafeMutablePointer<Float>.allocate(capacity: floatSums ? m * k / 32 : 0)
        defer { xsums.deallocate() }
        if floatSums {
            for i in 0..<m {
                for b in 0..<(k / 32) {
                    let block = x + i * ldx + 32 * b
                    var sum: Float = 0
                    for j in 0..<32 { sum += block[j] }
                    xsums[i * k / 32 + b] = sum
                }
            }
        }
        let chunks = chunks(of: 32)
        parallelFor(chunks.count) { c in
            let range = chunks[c]
            let (first, format) = row(range.lowerBound)
            let stride = strides[locate(range.lowerBound).segment]
            let blocks = Int32(k / format.blockSize)
            for (n, r) in range.enumerated() {
                let bytes = first + n * stride
                for i in 0..<m {
                    let value =
                        integer
                        ? ibke_quant_dot_q8(format.rawValue, bytes, codes + i * k, scales + i * k / 32, sums + i * k / 32, blocks)
                        : floatSums
                            ? ibke_quant_dot_sums(format.rawValue, bytes, x + i * ldx, xsums + i * k / 32, blocks)
                            : ibke_quant_dot(format.rawValue, bytes, x + i * ldx, blocks)
                    if accumulate { y[i * ldy + r] += value } else { y[i * ldy + r] = value }
                }
            }
        }
    }

    /// `dX[M, K] (+)= dY[M, N] · W`, the input gradient of a linear layer
    /// (``Backward/linearInput``), dequantizing tiles of rows on the fly.
    public func multiplyTransposed(
        _ dY: UnsafePointer<Float>, rows m: Int, ldDY: Int, into dX: UnsafeMutablePointer<Float>, ldDX: Int,
        accumulate: Bool = false
    ) {
        guard m > 0 else { return }
        let k = columns
        if !accumulate { for i in 0..<m { (dX + i * ldDX).update(repeating: 0, count: k) } }
        guard rows > 0 else { return }
        // Each thread takes every T-th tile of rows (dequantizing each row once in all) and
        // accumulates into its own [M, K] buffer; the buffers are summed at the end.
        let tiles = chunks(of: 64)
        let threads = max(1, min(ComputeThreads.count, tiles.count))
        let partials = (0..<threads).map { _ in Tensor(zeros: [m, k]) }
        parallelFor(threads) { t in
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 64 * k)
            defer { buffer.deallocate() }
            for range in stride(from: t, to: tiles.count, by: threads).map({ tiles[$0] }) {
                dequantize(rows: range, into: buffer)
                MatMul.gemm(
                    m: m, n: k, k: range.count, a: dY + range.lowerBound, lda: ldDY, b: buffer, ldb: k,
                    beta: 1, c: partials[t].pointer, ldc: k)
            }
        }
        for i in 0..<m {
            for partial in partials { Kernels.add(partial.pointer + i * k, into: dX + i * ldDX, count: k) }
        }
    }
}
