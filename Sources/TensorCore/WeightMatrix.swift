/// A linear layer's weight `[out, in]` (or an embedding table): float32 values, or GGUF blocks
/// computed with directly (``QuantizedMatrix``).
///
/// A quantized matrix becomes float32 only when something asks for writable values
/// (``values()``: an edit applied in place); ``restoreBlocks()`` goes back to the blocks, so a
/// reverted edit leaves the model bit for bit as loaded. Reading values (``scalars``,
/// ``copyRows(_:)``) never converts.
/// `@unchecked Sendable`: `dense` is switched by ``values()`` and ``restoreBlocks()`` unlocked; the
/// model's owner must not convert or edit a matrix while another thread computes with it.
public final class WeightMatrix: @unchecked Sendable {
    public let shape: [Int]
    /// The blocks the matrix was loaded from; nil for a float32 matrix.
    public let blocks: QuantizedMatrix?
    private var dense: Tensor?

    public init(_ values: Tensor) {
        precondition(values.rank == 2, "a weight matrix is [out, in], got \(values.shape)")
        shape = values.shape
        blocks = nil
        dense = values
    }

    public init(_ blocks: QuantizedMatrix) {
        shape = blocks.shape
        self.blocks = blocks
        dense = nil
    }

    public var rows: Int { shape[0] }
    public var columns: Int { shape[1] }
    public var count: Int { shape[0] * shape[1] }

    /// Whether products read the blocks (not float32 values).
    public var isQuantized: Bool { dense == nil }

    /// The float32 values, writable in place: a quantized matrix is dequantized once and
    /// computes with these values from then on (until ``restoreBlocks()``).
    public func values() -> Tensor {
        if let dense { return dense }
        let values = blocks!.dequantized()
        dense = values
        return values
    }

    /// Drops the float32 values of a quantized matrix: products read the blocks again.
    public func restoreBlocks() {
        if blocks != nil { dense = nil }
    }

    /// A copy of rows `range` (all by default) as float32, without converting the matrix.
    public func copyRows(_ range: Range<Int>? = nil) -> [Float] {
        let range = range ?? 0..<rows
        if let dense { return Array(UnsafeBufferPointer(start: dense.pointer + range.lowerBound * columns, count: range.count * columns)) }
        return [Float](unsafeUninitializedCapacity: range.count * columns) { buffer, initialized in
            blocks!.dequantize(rows: range, into: buffer.baseAddress!)
            initialized = range.count * columns
        }
    }

    /// Every value, row by row (a copy).
    public var scalars: [Float] { copyRows() }

    /// Row `r` into `y` (an embedding lookup).
    public func copyRow(_ r: Int, into y: UnsafeMutablePointer<Float>) {
        if let dense {
            y.update(from: dense.pointer + r * columns, count: columns)
        } else {
            blocks!.dequantize(rows: r..<(r + 1), into: y)
        }
    }

    /// `y[M, N] (+)= x[M, K] · Wᵀ (+ bias)`, rows `outputs` of W only when given (a view of a
    /// fused matrix: its outputs are then `outputs.count` wide).
    public func linear(
        _ x: UnsafePointer<Float>, rows m: Int, ldx: Int, bias: Tensor? = nil,
        into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false
    ) {
        if let dense {
            MatMul.linear(x, rows: m, ldx: ldx, weight: dense, bias: bias, into: y, ldy: ldy, accumulate: accumulate)
            return
        }
        blocks!.multiply(x, rows: m, ldx: ldx, into: y, ldy: ldy, accumulate: accumulate)
        if let bias {
            precondition(bias.count == rows, "bias of \(bias.count) for \(rows) outputs")
            for r in 0..<m { Kernels.add(bias.pointer, into: y + r * ldy, count: rows) }
        }
    }

    /// `dX[M, K] (+)= dY[M, N] · W`: the input gradient of ``linear(_:rows:ldx:bias:into:ldy:accumulate:)``.
    public func linearInput(
        _ dY: UnsafePointer<Float>, rows m: Int, ldDY: Int, into dX: UnsafeMutablePointer<Float>, ldDX: Int,
        accumulate: Bool = false
    ) {
        if let dense {
            Backward.linearInput(
                dY, rows: m, ldDY: ldDY, weight: dense.pointer, outputs: rows, inputs: columns,
                into: dX, ldDX: ldDX, accumulate: accumulate)
        } else {
            blocks!.multiplyTransposed(dY, rows: m, ldDY: ldDY, into: dX, ldDX: ldDX, accumulate: accumulate)
        }
    }

    /// `y[r] = W[rows.lowerBound + r] · x` for rows `range` of the matrix (one vector).
    public func matrixVector(rows range: Range<Int>, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        if let dense {
            MatMul.gemv(dense.pointer + range.lowerBound * columns, rows: range.count, columns: columns, x, y)
        } else {
            let full = UnsafeMutablePointer<Float>.allocate(capacity: rows)
            defer { full.deallocate() }
            blocks!.multiply(x, rows: 1, ldx: columns, into: full, ldy: rows)
            y.update(from: full + range.lowerBound, count: range.count)
        }
    }
}
