import COpenBLAS

/// Float64 linear algebra for the F×F systems of MEMIT and AlphaEdit (METHODS.md §3–4; the
/// references solve them in double), and the symmetric eigendecomposition of AlphaEdit's
/// null-space projector. Matrices are row-major `[Double]`; a row of right-hand sides is one
/// system (LAPACK's column-major columns).
public enum DenseSolve {
    /// The Cholesky factor of a symmetric positive definite matrix, for many right-hand sides.
    public struct CholeskyFactor: Sendable {
        public let order: Int
        /// Column-major lower factor (= the row-major upper triangle).
        let factor: [Double]

        /// Factors `a + ridge·I` (`[n, n]`, symmetric; the upper triangle is read).
        ///
        /// - Throws: ``CholeskyError`` when it is not positive definite.
        public init(_ a: [Double], order n: Int, ridge: Double = 0) throws {
            precondition(a.count == n * n, "matrix of \(a.count) for order \(n)")
            ComputeThreads.singleThreadedBLAS
            var f = a
            for i in 0..<n { f[i * n + i] += ridge }
            var order = Int32(n), lda = Int32(n), info: Int32 = 0, uplo = CChar(UInt8(ascii: "L"))
            dpotrf_(&uplo, &order, &f, &lda, &info)
            guard info == 0 else { throw CholeskyError.notPositiveDefinite(minor: Int(info), order: n) }
            self.order = n
            factor = f
        }

        /// `x = A⁻¹ b` for each of the `count` rows of `b` (`[count, n]`).
        public func solve(_ b: [Double], count: Int) -> [Double] {
            precondition(b.count == count * order, "right-hand sides of \(b.count) for \(count) × \(order)")
            if count == 0 { return [] }
            ComputeThreads.singleThreadedBLAS
            var x = b, n = Int32(order), lda = Int32(order), nrhs = Int32(count), info: Int32 = 0
            var uplo = CChar(UInt8(ascii: "L"))
            factor.withUnsafeBufferPointer { f in
                dpotrs_(&uplo, &n, &nrhs, f.baseAddress!, &lda, &x, &lda, &info)
            }
            precondition(info == 0, "dpotrs argument \(-info) is invalid")
            return x
        }
    }

    /// Solves `A x = b` for each of the `count` rows `b` of `rightHandSides` by LU with partial
    /// pivoting (`dgesv`); `A` (`[n, n]`, row-major) need not be symmetric.
    ///
    /// - Throws: ``CholeskyError/singular(order:)`` when a pivot is exactly zero.
    public static func general(_ a: [Double], order n: Int, rightHandSides b: [Double], count: Int) throws -> [Double] {
        precondition(a.count == n * n && b.count == count * n, "system of \(a.count) and \(b.count) for order \(n)")
        if count == 0 { return [] }
        ComputeThreads.singleThreadedBLAS
        var columnMajor = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { columnMajor[j * n + i] = a[i * n + j] } }
        var x = b, order = Int32(n), lda = Int32(n), nrhs = Int32(count), info: Int32 = 0
        var pivots = [Int32](repeating: 0, count: n)
        dgesv_(&order, &nrhs, &columnMajor, &lda, &pivots, &x, &lda, &info)
        guard info == 0 else {
            if info > 0 { throw CholeskyError.singular(order: n) }
            preconditionFailure("dgesv argument \(-info) is invalid")
        }
        return x
    }

    /// `C[m, n] = op(A) · op(B)` in float64, row-major (`op` transposes when asked).
    public static func multiply(
        _ a: [Double], _ b: [Double], m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false
    ) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        if m == 0 || n == 0 { return c }
        ComputeThreads.singleThreadedBLAS
        cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(transposeA ? m : k), b, Int32(transposeB ? k : n), 0,
                    &c, Int32(n))
        return c
    }

    /// Eigenvalues (ascending) and eigenvectors of a symmetric matrix (`ssyevd`); row `i` of
    /// `vectors` is the unit eigenvector of `values[i]`.
    ///
    /// - Throws: ``CholeskyError/noConvergence(order:)`` when LAPACK does not converge.
    public static func symmetricEigen(_ matrix: Tensor) throws -> (values: [Float], vectors: Tensor) {
        let n = matrix.shape[0]
        precondition(matrix.shape == [n, n], "matrix \(matrix.shape) is not square")
        ComputeThreads.singleThreadedBLAS
        let a = matrix.copy()
        var order = Int32(n), lda = Int32(n), info: Int32 = 0, lwork: Int32 = -1, liwork: Int32 = -1
        // Row-major upper = column-major lower; the eigenvectors come back as columns, i.e. rows here.
        var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "L"))
        var values = [Float](repeating: 0, count: n), workSize: Float = 0, iworkSize: Int32 = 0
        ssyevd_(&jobz, &uplo, &order, a.pointer, &lda, &values, &workSize, &lwork, &iworkSize, &liwork, &info)
        lwork = Int32(workSize)
        liwork = iworkSize
        var work = [Float](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(liwork))
        ssyevd_(&jobz, &uplo, &order, a.pointer, &lda, &values, &work, &lwork, &iwork, &liwork, &info)
        guard info == 0 else {
            if info > 0 { throw CholeskyError.noConvergence(order: n) }
            preconditionFailure("ssyevd argument \(-info) is invalid")
        }
        return (values, a)
    }
    /// The thin singular value decomposition `A = U diag(s) Vᵀ` of a row-major `[m, n]` matrix
    /// (`sgesdd`): `u` `[m, k]`, `s` descending, `vt` `[k, n]`, `k = min(m, n)`.
    ///
    /// - Throws: ``CholeskyError/noConvergence(order:)`` when LAPACK does not converge.
    public static func singularValueDecomposition(_ matrix: Tensor) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        precondition(matrix.shape.count == 2, "matrix \(matrix.shape) is not two-dimensional")
        let (m, n) = (matrix.shape[0], matrix.shape[1])
        let k = min(m, n)
        let u = Tensor(zeros: [m, k]), vt = Tensor(zeros: [k, n])
        var s = [Float](repeating: 0, count: k)
        if k == 0 { return (u, s, vt) }
        ComputeThreads.singleThreadedBLAS
        // Row-major A is column-major Aᵀ = V S Uᵀ: LAPACK's "U" of Aᵀ (n × k, column-major) is
        // our Vᵀ read row-major, and its "Vᵀ" (k × m) is our U.
        let a = matrix.copy()
        var rows = Int32(n), columns = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(k)
        var info: Int32 = 0, lwork: Int32 = -1, workSize: Float = 0
        var jobz = CChar(UInt8(ascii: "S"))
        var iwork = [Int32](repeating: 0, count: 8 * k)
        sgesdd_(&jobz, &rows, &columns, a.pointer, &lda, &s, vt.pointer, &ldu, u.pointer, &ldvt,
                &workSize, &lwork, &iwork, &info)
        lwork = Int32(workSize)
        var work = [Float](repeating: 0, count: Int(lwork))
        sgesdd_(&jobz, &rows, &columns, a.pointer, &lda, &s, vt.pointer, &ldu, u.pointer, &ldvt,
                &work, &lwork, &iwork, &info)
        guard info == 0 else {
            if info > 0 { throw CholeskyError.noConvergence(order: k) }
            preconditionFailure("sgesdd argument \(-info) is invalid")
        }
        return (u, s, vt)
    }
}
