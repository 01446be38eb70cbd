import TensorCore

/// A running `Σ k kᵀ` over key vectors, for `C = E[k kᵀ]` (METHODS.md §6).
///
/// Each batch is multiplied in float32 with BLAS (`ssyrk` on diagonal blocks, `sgemm` above
/// them, the blocks spread over the thread pool since OpenBLAS runs single-threaded) and added
/// to a float64 sum, so rounding does not grow with the number of batches. Only the upper
/// triangle is accumulated; ``mean()`` mirrors it.
/// `@unchecked Sendable`: `sum`, `tokenCount` and the `batch` buffer change on every add, unlocked;
/// one thread at a time adds (the collector's), and its parallel loops write disjoint blocks.
public final class SecondMomentAccumulator: @unchecked Sendable {
    /// F, the key width.
    public let width: Int
    /// Keys added so far.
    public private(set) var tokenCount = 0
    /// Upper triangle of the float64 sum, row-major `[F, F]`.
    private var sum: [Double]
    /// One batch's float32 product.
    private let batch: Tensor

    public init(width: Int) {
        self.width = width
        sum = Array(repeating: 0, count: width * width)
        batch = Tensor(zeros: [width, width])
    }

    /// Column blocks of the batch product, one task each.
    private static let block = 256

    /// Adds the keys in `rows` of `keys` (`[N, F]`).
    public func add(_ keys: Tensor, rows: Range<Int>? = nil) {
        precondition(keys.rank == 2 && keys.shape[1] == width, "keys \(keys.shape) for width \(width)")
        let rows = rows ?? 0..<keys.shape[0]
        guard !rows.isEmpty else { return }
        Self.multiply([(keys.pointer + rows.lowerBound * width, batch)], rows: [rows.count], width: width)
        addBatch(rows.count)
    }

    /// Adds each accumulator's keys (`[N, F]`, one tensor per accumulator), with every
    /// accumulator's BLAS blocks in one parallel loop (better balanced than one loop each).
    public static func add(_ keys: [Tensor], to accumulators: [SecondMomentAccumulator]) {
        precondition(keys.count == accumulators.count, "one key tensor per accumulator")
        guard let width = accumulators.first?.width else { return }
        for (k, a) in zip(keys, accumulators) {
            precondition(k.rank == 2 && k.shape[1] == width && a.width == width, "keys \(k.shape) for width \(a.width)")
        }
        multiply(zip(keys, accumulators).map { ($0.pointer, $1.batch) }, rows: keys.map { $0.shape[0] }, width: width)
        parallelFor(accumulators.count) { accumulators[$0].addBatch(keys[$0].shape[0]) }
    }

    /// `product = keysᵀ keys` (upper triangle) for each pair.
    private static func multiply(
        _ pairs: [(keys: UnsafeMutablePointer<Float>, product: Tensor)], rows: [Int], width f: Int
    ) {
        let blocks = (f + block - 1) / block
        parallelFor(pairs.count * blocks, dynamic: true) { task in
            let (pair, b) = task.quotientAndRemainder(dividingBy: blocks)
            let (k, c) = (pairs[pair].keys, pairs[pair].product.pointer)
            let n = rows[pair]
            let first = b * block
            let w = min(block, f - first)
            MatMul.syrkTransposed(n: w, k: n, a: k + first, lda: f, c: c + first * f + first, ldc: f)
            if first > 0 {
                MatMul.gemm(
                    transA: true, m: first, n: w, k: n, a: k, lda: f, b: k + first, ldb: f,
                    c: c + first, ldc: f)
            }
        }
    }

    private func addBatch(_ rows: Int) {
        let f = width
        let product = batch.pointer
        sum.withUnsafeMutableBufferPointer { s in
            for i in 0..<f {
                for j in i..<f { s[i * f + j] += Double(product[i * f + j]) }
            }
        }
        tokenCount += rows
    }

    /// `Σ k kᵀ / N`, symmetric, `[F, F]` float32.
    public func mean() -> Tensor {
        precondition(tokenCount > 0, "no keys were added")
        let f = width
        let c = Tensor(zeros: [f, f])
        let p = c.pointer
        let n = Double(tokenCount)
        for i in 0..<f {
            for j in i..<f {
                let v = Float(sum[i * f + j] / n)
                p[i * f + j] = v
                p[j * f + i] = v
            }
        }
        return c
    }
}
