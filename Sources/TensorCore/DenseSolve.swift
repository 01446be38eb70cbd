import COpenBLAS

/// Float64 linear algebra for the F×F systems of ROME, MEMIT and AlphaEdit (METHODS.md §2–4;
/// the references solve MEMIT's in double, and C's condition number is too large for float32),
/// and the symmetric eigendecomposition of AlphaEdit's null-space projector. Matrices are
/// row-major `[Double]`; a row of right-hand sides is one system (LAPACK's column-major columns).
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
            var order = Int32(n)
            var lda = Int32(n)
            var info: Int32 = 0
            var uplo = CChar(UInt8(ascii: "L"))
            dpotrf_(&uplo, &order, &f, &lda, &info)
            guard info == 0 else { throw CholeskyError.notPositiveDefinite(minor: Int(info), order: n) }
            self.order = n
            factor = f
        }

        /// Factors a symmetric positive semidefinite `a` (`[n, n]`) with the smallest ridge that
        /// makes it definite: none (the references solve with C itself), then 1e-6, 1e-4 and 1e-2
        /// of its mean diagonal. A second moment estimated from fewer keys than its order is
        /// singular; this is the one ridge rule of every solve with one.
        ///
        /// - Throws: ``CholeskyError`` when even the largest ridge leaves it indefinite.
        public init(regularizing a: [Double], order n: Int) throws {
            if let exact = try? Self(a, order: n) {
                self = exact
                return
            }
            let meanDiagonal = (0..<n).reduce(0.0) { $0 + a[$1 * n + $1] } / Double(max(1, n))
            for relative in [1e-6, 1e-4] {
                if let ridged = try? Self(a, order: n, ridge: relative * meanDiagonal) {
                    self = ridged
                    return
                }
            }
            self = try Self(a, order: n, ridge: 1e-2 * meanDiagonal)
        }

        /// ``init(regularizing:order:)`` of a float32 `[n, n]` matrix.
        public init(regularizing a: Tensor) throws {
            let n = a.shape[0]
            precondition(a.shape == [n, n], "matrix \(a.shape) is not square")
            try self.init(regularizing: a.scalars.map(Double.init), order: n)
        }

        /// `x = A⁻¹ b` for each of the `count` rows of `b` (`[count, n]`).
        public func solve(_ b: [Double], count: Int) -> [Double] {
            precondition(b.count == count * order, "right-hand sides of \(b.count) for \(count) × \(order)")
            if count == 0 { return [] }
            ComputeThreads.singleThreadedBLAS
            var x = b
            var n = Int32(order)
            var lda = Int32(order)
            var nrhs = Int32(count)
            var info: Int32 = 0
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
        var x = b
        var order = Int32(n)
        var lda = Int32(n)
        var nrhs = Int32(count)
        var info: Int32 = 0
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
        cblas_dgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), 1, a, Int32(transposeA ? m : k), b, Int32(transposeB ? k : n), 0,
            &c, Int32(n))
        return c
    }

    /// A LAPACK workspace size: the queried one (a Float, rounded up) but at least `minimum`.
    static func workspace(_ queried: Float, minimum: Int) -> Int32 {
        Int32(clamping: max(Int(queried.rounded(.up)), minimum))
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
        var order = Int32(n)
        var lda = Int32(n)
        var info: Int32 = 0
        var lwork: Int32 = -1
        var liwork: Int32 = -1
        // Row-major upper = column-major lower; the eigenvectors come back as columns, i.e. rows here.
        var jobz = CChar(UInt8(ascii: "V"))
        var uplo = CChar(UInt8(ascii: "L"))
        var values = [Float](repeating: 0, count: n)
        var workSize: Float = 0
        var iworkSize: Int32 = 0
        ssyevd_(&jobz, &uplo, &order, a.pointer, &lda, &values, &workSize, &lwork, &iworkSize, &liwork, &info)
        // The workspace size comes back as a Float, which rounds sizes above 2²⁴ (n > 2,896) down:
        // never ask for less than LAPACK's documented minimum.
        lwork = Self.workspace(workSize, minimum: 1 + 6 * n + 2 * n * n)
        liwork = max(iworkSize, Int32(3 + 5 * n))
        var work = [Float](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
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
        let u = Tensor(zeros: [m, k])
        let vt = Tensor(zeros: [k, n])
        var s = [Float](repeating: 0, count: k)
        if k == 0 { return (u, s, vt) }
        ComputeThreads.singleThreadedBLAS
        // Row-major A is column-major Aᵀ = V S Uᵀ: LAPACK's "U" of Aᵀ (n × k, column-major) is
        // our Vᵀ read row-major, and its "Vᵀ" (k × m) is our U.
        let a = matrix.copy()
        var rows = Int32(n)
        var columns = Int32(m)
        var lda = Int32(n)
        var ldu = Int32(n)
        var ldvt = Int32(k)
        var info: Int32 = 0
        var lwork: Int32 = -1
        var workSize: Float = 0
        var jobz = CChar(UInt8(ascii: "S"))
        var iwork = [Int32](repeating: 0, count: 8 * k)
        sgesdd_(
            &jobz, &rows, &columns, a.pointer, &lda, &s, vt.pointer, &ldu, u.pointer, &ldvt,
            &workSize, &lwork, &iwork, &info)
        lwork = Self.workspace(workSize, minimum: 3 * k * k + max(max(m, n), 4 * k * k + 4 * k))  // as ssyevd's above
        var work = [Float](repeating: 0, count: Int(lwork))
        sgesdd_(
            &jobz, &rows, &columns, a.pointer, &lda, &s, vt.pointer, &ldu, u.pointer, &ldvt,
            &work, &lwork, &iwork, &info)
        guard info == 0 else {
            if info > 0 { throw CholeskyError.noConvergence(order: k) }
            preconditionFailure("sgesdd argument \(-info) is invalid")
        }
        return (u, s, vt)
    }
}

/// A failed factorisation (Cholesky, LU or eigendecomposition).
public enum CholeskyError: Error, CustomStringConvertible, Equatable {
    case notPositiveDefinite(minor: Int, order: Int)
    case singular(order: Int)
    case noConvergence(order: Int)

    public var description: String {
        switch self {
        case .notPositiveDefinite(let minor, let order):
            "the \(order)×\(order) matrix is not positive definite (leading minor \(minor)); add a ridge"
        case .singular(let order):
            "the \(order)×\(order) matrix is singular"
        case .noConvergence(let order):
            "the decomposition of the \(order)×\(order) matrix did not converge"
        }
    }
}
