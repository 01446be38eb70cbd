import Models
import TensorCore

/// The per-token gradient signal of edit requests (IBKE.md §3.2, METHODS.md §5): for each
/// edited matrix, the rows `(u_t, δ_t)` of its input and of the edit loss's gradient at its
/// output, whose outer products sum to the weight gradient (never materialised).
public struct GradientSignal: Sendable {
    /// Per edited matrix, the selected rows: `input` `[T, in]`, `outputGradient` `[T, out]`.
    public var pairs: [ParameterID: TokenPairs]
    /// The edit loss on the current model: each request's token-mean target NLL, averaged.
    public var loss: Float

    /// The teacher-forced sequences of requests (`prompt + target` without its last token),
    /// the positions whose logits predict the target tokens, and those tokens.
    public static func teacherForced(_ requests: [PreparedRequest]) -> (sequences: [[Int]], positions: [[Int]], targets: [[Int]]) {
        (
            requests.map { $0.prompt + $0.target.dropLast() },
            requests.map { Array(($0.prompt.count - 1)..<($0.prompt.count + $0.target.count - 1)) },
            requests.map(\.target)
        )
    }

    /// One forward and backward pass of the edit loss, from `prefix` when given (its sequences
    /// must be ``teacherForced(_:)``'s, e.g. a cached residual below the edited blocks) or from
    /// the tokens, on the model with `interventions`; the backward stops at the lowest edited block.
    public static func capture(
        _ requests: [PreparedRequest], transformer: Transformer, modules: [ParameterID],
        rows selection: HypernetworkSettings.RowSelection, prefix: Prefix? = nil, interventions: [Intervention] = []
    ) throws -> GradientSignal {
        let (sequences, positions, targets) = teacherForced(requests)
        let request = GradientRequest(tokenPairs: Set(modules))
        let tape =
            try prefix.map {
                try transformer.record($0, interventions: interventions, logits: .positions(positions), gradients: request)
            } ?? transformer.record(sequences, interventions: interventions, logits: .positions(positions), gradients: request)
        let flatTargets = targets.flatMap { $0 }
        let weights = targets.flatMap { t in Array(repeating: 1 / Float(requests.count * t.count), count: t.count) }
        let v = transformer.config.vocabularySize
        let rows = flatTargets.count
        let dLogits = Tensor(zeros: [rows, v])
        let loss = flatTargets.withUnsafeBufferPointer { t in
            weights.withUnsafeBufferPointer { w in
                Losses.crossEntropy(
                    logits: tape.logits.pointer, rows: rows, vocabularySize: v, ldLogits: v,
                    targets: t.baseAddress!, weights: w.baseAddress!, dLogits: dLogits.pointer, ldDLogits: v)
            }
        }
        let all = tape.backward(dLogits: dLogits).tokenPairs
        let targetRows = Transformer.packedRows(sequences, positions: positions)
        let subjectRows = Transformer.packedRows(sequences, positions: requests.map { [$0.subjectLast] })
        var pairs: [ParameterID: TokenPairs] = [:]
        for id in modules {
            guard let p = all[id] else { preconditionFailure("no token pairs for \(id)") }
            let kept: [Int]
            switch selection {
            case .targetOnly: kept = targetRows
            case .subjectLast: kept = subjectRows
            case .allNonzero: kept = (0..<p.input.shape[0]).filter { !isZero(p.input, row: $0) && !isZero(p.outputGradient, row: $0) }
            }
            pairs[id] = TokenPairs(input: gather(p.input, kept), outputGradient: gather(p.outputGradient, kept))
        }
        return GradientSignal(pairs: pairs, loss: loss)
    }

    private static func isZero(_ t: Tensor, row: Int) -> Bool {
        let w = t.shape[1]
        let p = t.pointer + row * w
        return (0..<w).allSatisfy { p[$0] == 0 }
    }

    private static func gather(_ t: Tensor, _ rows: [Int]) -> Tensor {
        let w = t.shape[1]
        let out = Tensor(zeros: [rows.count, w])
        for (i, r) in rows.enumerated() { (out.pointer + i * w).update(from: t.pointer + r * w, count: w) }
        return out
    }
}
