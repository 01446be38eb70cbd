import Foundation
import Models
import TensorCore

/// The inputs one edited matrix sees on an edit's counterfactual neighbours (its prompt with
/// other subjects), and the projection off their span: `v ↦ v − Kᵀ(KKᵀ + εI)⁻¹K v`. An update
/// whose input factors are projected so changes nothing on those inputs, while the part of the
/// edit's own inputs that its subject makes different survives.
public struct NeighbourSpan: Sendable {
    /// `[R, d]`, in float64 for the solve.
    let keys: [Double]
    let rows: Int
    let width: Int
    let factor: DenseSolve.CholeskyFactor

    /// The span of the rows of `keys` (`[R, d]`), with a ridge of 1e-4 of their mean square norm
    /// so that near-duplicate rows (the prompt's tokens before the subject) stay solvable.
    init(keys: Tensor) throws {
        let rows = keys.shape[0]
        let width = keys.shape[1]
        let values = keys.scalars.map(Double.init)
        var gram = DenseSolve.multiply(values, values, m: rows, n: rows, k: width, transposeB: true)
        let meanSquare = (0..<rows).reduce(0.0) { $0 + gram[$1 * rows + $1] } / Double(max(1, rows))
        for i in 0..<rows { gram[i * rows + i] += 1e-4 * meanSquare + 1e-12 }
        factor = try DenseSolve.CholeskyFactor(gram, order: rows)
        self.rows = rows
        self.width = width
        self.keys = values
    }

    /// Projects `count` rows of `width` floats at `p` (row stride `stride`) off the span, in place.
    func project(_ p: UnsafeMutablePointer<Float>, count: Int, stride: Int) {
        guard count > 0, rows > 0 else { return }
        var v = [Double](repeating: 0, count: count * width)
        for t in 0..<count { for j in 0..<width { v[t * width + j] = Double(p[t * stride + j]) } }
        let kv = DenseSolve.multiply(v, keys, m: count, n: rows, k: width, transposeB: true)  // [T, R]
        let c = factor.solve(kv, count: count)  // rows: (KKᵀ + εI)⁻¹ K v
        let removed = DenseSolve.multiply(c, keys, m: count, n: width, k: rows, transposeB: false)  // [T, d]
        for t in 0..<count { for j in 0..<width { p[t * stride + j] = Float(v[t * width + j] - removed[t * width + j]) } }
    }

    /// Per module, the span of its inputs on every neighbour prompt of `requests` (all their
    /// positions), on the model as it stands; nil when `settings.neighbours` is 0.
    static func spans(
        _ requests: [PreparedRequest], modules: [ParameterID], settings: HypernetworkSettings, model: LanguageModel
    ) throws -> [NeighbourSpan]? {
        guard settings.neighbours > 0 else { return nil }
        var sequences: [[Int]] = []
        for request in requests {
            guard let template = request.request.template else { continue }
            let others = settings.neighbourSubjects.filter { $0.lowercased() != request.request.subject.lowercased() }
            for subject in others.prefix(settings.neighbours) {
                sequences.append(model.encode(template.replacingFirst("{}", with: subject)))
            }
        }
        guard !sequences.isEmpty else { return nil }
        // Settings with neighbours name only matrices with an input hook (HypernetworkSettings).
        let hooks = Array(Set(modules.map { HookKey($0.inputPoint!, layer: $0.layer) }))
        let captures = try model.transformer.forward(
            sequences, interventions: hooks.map { .capture($0.point, layer: $0.layer) },
            logits: .none
        ).captures
        return try modules.map { try NeighbourSpan(keys: captures[HookKey($0.inputPoint!, layer: $0.layer)]!) }
    }
}
