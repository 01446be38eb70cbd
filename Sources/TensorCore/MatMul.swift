import COpenBLAS

/// Matrix products. Every matmul in IBKE goes through here: OpenBLAS `sgemm` (single-threaded,
/// split over the ``parallelFor(_:dynamic:_:)`` pool) for two or more rows, and
/// ``gemv(_:rows:columns:_:_:)`` (a bandwidth-bound Swift kernel) for one row, where OpenBLAS's
/// sgemm is pathologically slow (MACHINE.md §3).
public enum MatMul {
    /// `C[M, N] = alpha · op(A) · op(B) + beta · C`, row-major, with leading dimensions, on the
    /// calling thread.
    ///
    /// `op(A)` is `[M, K]` (`A` stored `[K, M]` when `transA`), `op(B)` is `[K, N]` (`B` stored
    /// `[N, K]` when `transB`).
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        ComputeThreads.singleThreadedBLAS
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The upper triangle of `C[N, N] = alpha · Aᵀ A + beta · C` for `A` `[K, N]`, row-major, on
    /// the calling thread (`ssyrk`: half the work of the full product).
    public static func syrkTransposed(
        n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if n == 0 { return }
        ComputeThreads.singleThreadedBLAS
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(k), alpha, a, Int32(lda), beta, c, Int32(ldc))
    }

    /// ``gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` split over the thread pool
    /// by blocks of output columns (each thread reads its own slice of `B`); serial when the
    /// product is small or already inside a parallel loop.
    public static func parallelGEMM(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let threads = ComputeThreads.count
        // Below ~2 MFLOP a split costs more in synchronisation than it saves.
        guard threads > 1, m * n * k >= 1 << 20, n >= 32 * threads else {
            gemm(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let aAddress = UInt(bitPattern: a)
        let bAddress = UInt(bitPattern: b)
        let cAddress = UInt(bitPattern: c)
        parallelFor(threads) { t in
            // Column blocks aligned to 16 floats (one cache line).
            let start = (n * t / threads) & ~15
            let end = t == threads - 1 ? n : (n * (t + 1) / threads) & ~15
            guard end > start else { return }
            let b = UnsafePointer<Float>(bitPattern: bAddress)!
            // Column j of op(B) starts at row j of B when transposed, else at element j.
            let bStart = transB ? b + start * ldb : b + start
            gemm(
                transA: transA, transB: transB, m: m, n: end - start, k: k, alpha: alpha,
                a: UnsafePointer<Float>(bitPattern: aAddress)!, lda: lda, b: bStart, ldb: ldb, beta: beta,
                c: UnsafeMutablePointer<Float>(bitPattern: cAddress)! + start, ldc: ldc)
        }
    }

    /// `y[M, N] = x[M, K] · Wᵀ (+ bias)` for a linear weight `W[N, K]`: the layout of every
    /// linear layer. Rows of `x` and `y` may be strided (`ldx`, `ldy`).
    public static func linear(
        _ x: UnsafePointer<Float>, rows m: Int, ldx: Int,
        weight: Tensor, bias: Tensor? = nil,
        into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false
    ) {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        let n = weight.shape[0]
        let k = weight.shape[1]
        if m == 1 {
            gemv(weight.pointer, rows: n, columns: k, x, y, accumulate: accumulate)
        } else {
            parallelGEMM(
                transB: true, m: m, n: n, k: k, a: x, lda: ldx, b: weight.pointer, ldb: k,
                beta: accumulate ? 1 : 0, c: y, ldc: ldy)
        }
        if let bias {
            precondition(bias.count == n, "bias of \(bias.count) for \(n) outputs")
            let bp = bias.pointer
            for r in 0..<m {
                let row = y + r * ldy
                for j in 0..<n { row[j] += bp[j] }
            }
        }
    }

    /// `y[N] = W[N, K] · x[K]` (or `y += W·x` when `accumulate`), parallel over rows.
    ///
    /// Single-token decoding is bound by reading `W` from memory. Each thread walks its rows in
    /// order, one dot product at a time, so it reads one sequential stream: measured faster
    /// (13.5 against 12 GB/s) than interleaving four rows, whose four streams the prefetchers
    /// follow less well.
    public static func gemv(
        _ w: UnsafePointer<Float>, rows n: Int, columns k: Int,
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        let rowsPerChunk = 64
        let chunks = (n + rowsPerChunk - 1) / rowsPerChunk
        let wAddress = UInt(bitPattern: w)
        let xAddress = UInt(bitPattern: x)
        let yAddress = UInt(bitPattern: y)
        parallelFor(chunks) { chunk in
            let w = UnsafePointer<Float>(bitPattern: wAddress)!
            let x = UnsafePointer<Float>(bitPattern: xAddress)!
            let y = UnsafeMutablePointer<Float>(bitPattern: yAddress)!
            for r in (chunk * rowsPerChunk)..<min(n, (chunk + 1) * rowsPerChunk) {
                let value = dot(w + r * k, x, k)
                y[r] = accumulate ? y[r] + value : value
            }
        }
    }

    /// `Σ a[i]·b[i]` with 16-wide partial sums.
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int) -> Float {
        var acc = SIMD16<Float>()
        let ar = UnsafeRawPointer(a)
        let br = UnsafeRawPointer(b)
        var i = 0
        while i + 16 <= k {
            acc +=
                ar.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                * br.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var s = acc.sum()
        while i < k {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }
}
