import Testing

@testable import TensorCore

@Suite struct DenseSolveTests {
    /// A random `[n, n]` matrix with entries in ±1 (SplitMix64).
    static func random(_ n: Int, _ m: Int, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        return (0..<(n * m)).map { _ in Double(rng.nextUnit()) * 2 - 1 }
    }

    /// `A Aᵀ + n·I`: symmetric positive definite.
    static func spd(_ n: Int, seed: UInt64) -> [Double] {
        let a = random(n, n, seed: seed)
        var s = DenseSolve.multiply(a, a, m: n, n: n, k: n, transposeB: true)
        for i in 0..<n { s[i * n + i] += Double(n) }
        return s
    }

    static func residual(_ a: [Double], _ x: [Double], _ b: [Double], n: Int, count: Int) -> Double {
        // Rows of x and b are systems: A xᵢ = bᵢ ⇔ X Aᵀ = B.
        let ax = DenseSolve.multiply(x, a, m: count, n: n, k: n, transposeB: true)
        return zip(ax, b).map { abs($0 - $1) }.max() ?? 0
    }

    @Test func choleskyAndLUSolveTheirSystems() throws {
        let n = 40
        let count = 3
        let a = Self.spd(n, seed: 1)
        let b = Self.random(count, n, seed: 2)
        let x = try DenseSolve.CholeskyFactor(a, order: n).solve(b, count: count)
        #expect(Self.residual(a, x, b, n: n, count: count) < 1e-10)
        // A non-symmetric matrix: LU must solve A x = b, not Aᵀ x = b.
        var g = Self.random(n, n, seed: 3)
        for i in 0..<n { g[i * n + i] += Double(n) }
        let y = try DenseSolve.general(g, order: n, rightHandSides: b, count: count)
        #expect(Self.residual(g, y, b, n: n, count: count) < 1e-10)
        #expect(throws: CholeskyError.self) { try DenseSolve.CholeskyFactor([1, 2, 2, 1], order: 2) }
        #expect(throws: CholeskyError.singular(order: 2)) {
            try DenseSolve.general([1, 2, 2, 4], order: 2, rightHandSides: [1, 1], count: 1)
        }
    }

    /// A definite matrix is factored as it is; a singular one (fewer samples than its order)
    /// with the smallest ridge that works, 1e-6 of its mean diagonal here.
    @Test func theRidgeGrowsOnlyWhereTheMatrixIsSingular() throws {
        let n = 12
        let count = 2
        let a = Self.spd(n, seed: 5)
        let b = Self.random(count, n, seed: 6)
        let exact = try DenseSolve.CholeskyFactor(a, order: n).solve(b, count: count)
        #expect(try DenseSolve.CholeskyFactor(regularizing: a, order: n).solve(b, count: count) == exact)
        // Definite on the first n − 1 coordinates, zero on the last.
        let smaller = Self.spd(n - 1, seed: 7)
        let singular = (0..<(n * n)).map { i in i / n < n - 1 && i % n < n - 1 ? smaller[(i / n) * (n - 1) + i % n] : 0 }
        #expect(throws: CholeskyError.self) { try DenseSolve.CholeskyFactor(singular, order: n) }
        let meanDiagonal = (0..<n).reduce(0.0) { $0 + singular[$1 * n + $1] } / Double(n)
        let ridged = try DenseSolve.CholeskyFactor(singular, order: n, ridge: 1e-6 * meanDiagonal).solve(b, count: count)
        #expect(try DenseSolve.CholeskyFactor(regularizing: singular, order: n).solve(b, count: count) == ridged)
    }

    @Test func eigendecompositionReconstructsTheMatrix() throws {
        let n = 24
        let a = Self.spd(n, seed: 4)
        let (values, vectors) = try DenseSolve.symmetricEigen(Tensor(shape: [n, n], values: a.map { Float($0) }))
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 <= $1 })
        // A vᵢ = λᵢ vᵢ for every row vᵢ.
        for i in 0..<n {
            let v = (0..<n).map { Double(vectors[i * n + $0]) }
            for r in 0..<n {
                let av = (0..<n).reduce(0.0) { $0 + a[r * n + $1] * v[$1] }
                #expect(abs(av - Double(values[i]) * v[r]) < 1e-3 * Double(values.last!))
            }
        }
    }
}

/// LAPACK reports workspace sizes as Floats; above 2²⁴ they round down (Qwen2.5's F = 4,864 needs
/// 1 + 6F + 2F² = 47,346,177 for `ssyevd`, which a Float holds as 47,346,176).
@Suite struct LAPACKWorkspaceTests {
    @Test func aRoundedDownQueryNeverGoesBelowTheMinimum() {
        let n = 4864
        let minimum = 1 + 6 * n + 2 * n * n
        let queried = Float(minimum)
        #expect(Int(queried) < minimum)
        #expect(DenseSolve.workspace(queried, minimum: minimum) == Int32(minimum))
        #expect(DenseSolve.workspace(1000.5, minimum: 10) == 1001)
    }
}
