import COpenBLAS

/// Symmetric positive definite solves through LAPACK's Cholesky factorisation (`spotrf`,
/// `spotrs`): ROME's `u = C⁻¹k` without forming the inverse (METHODS.md §2.2).
public enum Cholesky {
    /// Solves `(A + ridge·I) x = b` for each row `b` of `rightHandSides`.
    ///
    /// - Parameters:
    ///   - a: symmetric `[n, n]` (only the upper triangle is read; it is not modified).
    ///   - rightHandSides: `[m, n]`, one right-hand side per row (LAPACK's column-major `[n, m]`).
    ///   - ridge: added to the diagonal first (0 for none).
    /// - Returns: `[m, n]`, the solutions by row.
    /// - Throws: ``CholeskyError`` when `A + ridge·I` is not positive definite.
    public static func solve(_ a: Tensor, _ rightHandSides: Tensor, ridge: Float = 0) throws -> Tensor {
        let n = a.shape[0]
        precondition(a.shape == [n, n], "matrix \(a.shape) is not square")
        precondition(rightHandSides.rank == 2 && rightHandSides.shape[1] == n, "right-hand sides \(rightHandSides.shape) for \(n)")
        ComputeThreads.singleThreadedBLAS
        let factor = a.copy(), x = rightHandSides.copy()
        for i in 0..<n { factor.pointer[i * n + i] += ridge }
        var order = Int32(n), lda = Int32(n), ldb = Int32(n), count = Int32(rightHandSides.shape[0]), info: Int32 = 0
        // Row-major upper is column-major lower; the matrix is symmetric, so "L" reads the upper triangle.
        var uplo = CChar(UInt8(ascii: "L"))
        spotrf_(&uplo, &order, factor.pointer, &lda, &info)
        guard info == 0 else { throw CholeskyError.notPositiveDefinite(minor: Int(info), order: n) }
        spotrs_(&uplo, &order, &count, factor.pointer, &lda, x.pointer, &ldb, &info)
        precondition(info == 0, "spotrs argument \(-info) is invalid")
        return x
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
