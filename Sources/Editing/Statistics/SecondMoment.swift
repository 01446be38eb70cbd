import Foundation
import TensorCore

/// `C = E[k kᵀ]` (uncentred) of the keys of one layer, the input of its `ffn_down`:
/// ROME solves with it, MEMIT weighs it by λ, AlphaEdit projects on its small eigenvectors
/// (METHODS.md §6).
public struct SecondMoment: Sendable {
    public var key: StatisticsKey
    /// `[F, F]`, symmetric.
    public var matrix: Tensor
    /// N, the number of keys averaged.
    public var tokenCount: Int
    /// Windows the tokens came in.
    public var windowCount: Int
    /// Recorded with the matrix but not part of the key (model file name, corpus path, IBKE
    /// version, creation date); safetensors metadata names.
    public var provenance: [String: String]

    public init(key: StatisticsKey, matrix: Tensor, tokenCount: Int, windowCount: Int, provenance: [String: String] = [:]) {
        precondition(matrix.rank == 2 && matrix.shape[0] == matrix.shape[1], "second moment \(matrix.shape) is not square")
        self.key = key
        self.matrix = matrix
        self.tokenCount = tokenCount
        self.windowCount = windowCount
        self.provenance = provenance
    }

    public var layer: Int { key.layer }

    /// `tr(C)`: the mean squared norm of a key.
    public var trace: Double {
        let f = matrix.shape[0]
        return (0..<f).reduce(0) { $0 + Double(matrix[$1 * f + $1]) }
    }

    /// `C⁻¹ k` for each row `k` of `vectors` (`[m, F]`), by Cholesky in float64, with a ridge
    /// only where C is singular (``DenseSolve/CholeskyFactor/init(regularizing:)``).
    public func solve(_ vectors: Tensor) throws -> Tensor {
        precondition(vectors.rank == 2 && vectors.shape[1] == matrix.shape[0], "vectors \(vectors.shape) for \(matrix.shape)")
        let x = try DenseSolve.CholeskyFactor(regularizing: matrix).solve(vectors.scalars.map(Double.init), count: vectors.shape[0])
        return Tensor(shape: vectors.shape, values: x.map { Float($0) })
    }
}
