import Foundation
import TensorCore

/// Per-feature running mean and standard deviation (Welford's algorithm), learned from the
/// rows seen during training and frozen afterwards: MEND and IBKE feed their editor networks
/// `(x − mean) / (std + 1e-7)`, because raw gradients differ in scale by orders of magnitude
/// between matrices and requests.
public struct FeatureNormalizer: Sendable, Equatable {
    public let width: Int
    /// Rows seen.
    public private(set) var count: Int = 0
    public private(set) var mean: [Double]
    /// Σ (x − mean)² so far (Welford's M2).
    public private(set) var sumOfSquares: [Double]

    public init(width: Int) {
        self.width = width
        mean = Array(repeating: 0, count: width)
        sumOfSquares = Array(repeating: 0, count: width)
    }

    /// Restores a normaliser from its saved state.
    public init(count: Int, mean: [Double], sumOfSquares: [Double]) {
        precondition(mean.count == sumOfSquares.count, "mean and M2 of different widths")
        width = mean.count
        self.count = count
        self.mean = mean
        self.sumOfSquares = sumOfSquares
    }

    /// Adds `rows` rows of `width` floats, `ld` apart.
    public mutating func update(_ x: UnsafePointer<Float>, rows: Int, ld: Int) {
        for r in 0..<rows {
            count += 1
            let n = Double(count)
            let row = x + r * ld
            for j in 0..<width {
                let v = Double(row[j])
                let d = v - mean[j]
                mean[j] += d / n
                sumOfSquares[j] += d * (v - mean[j])
            }
        }
    }

    /// The sample standard deviation (`k − 1` in the denominator, as `torch.std`); 1 before two
    /// rows were seen, so an untrained normaliser passes values through centred only.
    public var standardDeviation: [Double] {
        guard count > 1 else { return Array(repeating: 1, count: width) }
        return sumOfSquares.map { ($0 / Double(count - 1)).squareRoot() }
    }

    /// Writes `(x − mean) / (std + 1e-7)` of `rows` rows (`ld` apart) into `y` (`ldy` apart).
    public func normalize(
        _ x: UnsafePointer<Float>, rows: Int, ld: Int, into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        let m = mean.map(Float.init)
        let inverse = standardDeviation.map { Float(1 / ($0 + 1e-7)) }
        for r in 0..<rows {
            let row = x + r * ld
            let out = y + r * ldy
            for j in 0..<width { out[j] = (row[j] - m[j]) * inverse[j] }
        }
    }
}
