import Foundation
import TensorCore

/// Where ROME, MEMIT and AlphaEdit get each layer's second moment `C = E[kkᵀ]` of its
/// `ffn_down` input (`[F, F]`), and how their runs and deltas name it (``Editor/statistics``).
public struct SecondMomentSource: Sendable {
    /// C of a layer.
    public let matrix: @Sendable (Int) throws -> Tensor
    /// Where the matrices come from (``SecondMoments/label``).
    public let label: @Sendable () -> String
    /// Where matrices derived from C are cached (AlphaEdit's eigendecompositions); nil: memory only.
    public let cacheDirectory: URL?

    public init(
        label: @escaping @Sendable () -> String = { "caller-supplied second moments" }, cacheDirectory: URL? = nil,
        matrix: @escaping @Sendable (Int) throws -> Tensor
    ) {
        self.matrix = matrix
        self.label = label
        self.cacheDirectory = cacheDirectory
    }

    /// The matrices of `statistics`, labelled by them, with derived caches beside them.
    public init(_ statistics: SecondMoments) {
        self.init(label: { statistics.label }, cacheDirectory: statistics.cacheDirectory) { try statistics.matrix(layer: $0) }
    }

    /// The Cholesky factor of a layer's C, in float64 (with a ridge only if C is singular).
    func factor(layer: Int) throws -> DenseSolve.CholeskyFactor {
        try DenseSolve.CholeskyFactor(regularizing: try matrix(layer))
    }
}
