import TensorCore

/// A place in a block where an activation can be read or changed (STYLE.md §5.2).
///
/// A block computes `x1 = x0 + attn_output(attend(qkv(norm(x0))))` and
/// `x2 = x1 + ffn_down(act(ffn_in(norm(x1))))`; the points are, in forward order:
public enum HookPoint: Hashable, Sendable, CaseIterable {
    /// The normed attention input (the input of `attn_q`/`attn_k`/`attn_v`), `[N, C]`.
    case attentionInput
    /// The attention block's output (after `attn_output`, before Gemma's output norm and the
    /// residual add), `[N, C]`.
    case attentionOutput
    /// The normed MLP input (the input of `ffn_gate`/`ffn_up`), `[N, C]`.
    case feedForwardInput
    /// The input of `ffn_down` (`silu(gate)·up` or `gelu(up)`): the ROME/MEMIT key, `[N, F]`.
    case feedForwardHidden
    /// The MLP output (after `ffn_down`, before Gemma's output norm and the residual add): the
    /// value, `[N, C]`.
    case feedForwardOutput
    /// The residual stream after the block, `[N, C]`.
    case layerOutput

    /// Width of the activation at this point.
    public func width(_ config: TransformerConfig) -> Int {
        self == .feedForwardHidden ? config.feedForwardSize : config.hiddenSize
    }
}

extension ParameterID {
    /// Where the matrix's input can be captured (nil for the attention output, whose input is
    /// the attention mix, not a hook point).
    public var inputPoint: HookPoint? {
        switch kind {
        case .attentionQuery, .attentionKey, .attentionValue: .attentionInput
        case .feedForwardGate, .feedForwardUp: .feedForwardInput
        case .feedForwardDown: .feedForwardHidden
        case .attentionOutput, .attentionNorm, .feedForwardNorm: nil
        }
    }
}

/// A hook point at one layer: the key of captured activations.
public struct HookKey: Hashable, Sendable {
    public var point: HookPoint
    public var layer: Int

    public init(_ point: HookPoint, layer: Int) {
        self.point = point
        self.layer = layer
    }
}

/// A change to (or a read of) one forward pass, passed as an argument: there is no global
/// hook registry. Interventions at the same hook point apply in the order given, so a
/// capture listed after an `add` sees the sum.
///
/// Rows are indices into the packed batch (sequence `s`'s token `t` is row
/// `start(s) + t`, sequences packed in order).
public enum Intervention: Sendable {
    /// Record the activation, `[N, width]`, in ``ForwardResult/captures``.
    case capture(HookPoint, layer: Int)
    /// Add `delta` (`[width]`) to the activation at each of `rows`.
    case add(HookPoint, layer: Int, delta: Tensor, rows: [Int])
    /// Replace the activation by `values` (`[N, width]`); nothing flows back through the
    /// replaced activation.
    case replace(HookPoint, layer: Int, values: Tensor)
    /// Use `W + delta` for the matrix `W` a parameter names (`delta` shaped as
    /// ``ModelWeights/tensor(_:config:)``), without changing the stored weights.
    case weightDelta(ParameterID, Tensor)
}

/// Logits and captured activations of a forward pass with interventions.
public struct ForwardResult: Sendable {
    /// `[R, V]`, as ``Transformer/forward(_:caches:logits:)`` returns.
    public var logits: Tensor
    /// One `[N, width]` tensor per `.capture`.
    public var captures: [HookKey: Tensor]
}

/// The residual stream entering layer ``layer`` of a batch, computed once and reused by
/// forward passes that only change layers from ``layer`` on (an editor's optimisation steps).
///
/// A prefix may also continue earlier tokens of each sequence (``Transformer/prefix(_:past:layers:interventions:)``):
/// their keys and values at every layer are cached once, and passes run only the new tokens.
/// Passes from one prefix (or from prefixes ``selecting(_:)`` made from it) write the new
/// tokens' slots of those caches, so they must not run concurrently.
public struct Prefix: Sendable {
    /// The new tokens of each sequence: rows of interventions and logit positions index these.
    public let sequences: [[Int]]
    public let layer: Int
    /// `[N, C]`, N the new tokens.
    public let residual: Tensor
    /// What the prefix's `.capture` interventions recorded: a pass that only reads activations
    /// (second-moment statistics) stops after the highest layer it reads.
    public let captures: [HookKey: Tensor]
    /// Keys and values of each sequence's earlier tokens at every layer (`count` = their
    /// number), or nil when the sequences start from scratch. Passes never advance them.
    let caches: [KVCache]?

    init(sequences: [[Int]], layer: Int, residual: Tensor, captures: [HookKey: Tensor], caches: [KVCache]? = nil) {
        if let caches { precondition(caches.count == sequences.count, "one cache per sequence") }
        self.sequences = sequences
        self.layer = layer
        self.residual = residual
        self.captures = captures
        self.caches = caches
    }

    /// The number of earlier (cached) tokens of each sequence.
    public var pastLengths: [Int] { caches?.map(\.count) ?? Array(repeating: 0, count: sequences.count) }

    /// The prefix of some of the sequences, in the order given (an optimiser drops those that
    /// have converged): their residual and capture rows, sharing their caches.
    public func selecting(_ sequenceIndices: [Int]) -> Prefix {
        var starts: [Int] = []
        var total = 0
        for tokens in sequences {
            starts.append(total)
            total += tokens.count
        }
        let ranges = sequenceIndices.map { s in
            precondition(s >= 0 && s < sequences.count, "sequence \(s) outside the prefix's \(sequences.count)")
            return starts[s]..<(starts[s] + sequences[s].count)
        }
        let rows = ranges.reduce(0) { $0 + $1.count }
        func gather(_ t: Tensor) -> Tensor {
            let width = t.shape[1]
            let result = Tensor(zeros: [rows, width])
            var next = 0
            for range in ranges {
                (result.pointer + next * width).update(
                    from: t.pointer + range.lowerBound * width,
                    count: range.count * width)
                next += range.count
            }
            return result
        }
        return Prefix(
            sequences: sequenceIndices.map { sequences[$0] }, layer: layer, residual: gather(residual),
            captures: captures.mapValues(gather), caches: caches.map { c in sequenceIndices.map { c[$0] } })
    }
}

extension Prefix {
    /// The prefixes of several batches as one batch, their sequences in order: an editor's
    /// training step reuses residuals cached per sample. Prefixes must start at the same layer,
    /// hold no captures, and have no cached past.
    public static func joined(_ prefixes: [Prefix]) -> Prefix {
        precondition(!prefixes.isEmpty, "no prefixes to join")
        let layer = prefixes[0].layer
        precondition(
            prefixes.allSatisfy { $0.layer == layer && $0.caches == nil && $0.captures.isEmpty },
            "joined prefixes must start at one layer, without past or captures")
        if prefixes.count == 1 { return prefixes[0] }
        let width = prefixes[0].residual.shape[1]
        let rows = prefixes.reduce(0) { $0 + $1.residual.shape[0] }
        let residual = Tensor(zeros: [rows, width])
        var next = 0
        for p in prefixes {
            (residual.pointer + next * width).update(from: p.residual.pointer, count: p.residual.count)
            next += p.residual.shape[0]
        }
        return Prefix(sequences: prefixes.flatMap(\.sequences), layer: layer, residual: residual, captures: [:])
    }
}

/// What a recorded forward pass should be able to differentiate, beyond the `.add`,
/// `.replace` and `.weightDelta` interventions (whose gradients are always returned).
public struct GradientRequest: Sendable {
    /// Weights to return `∂L/∂W` for (matrices or norm weights).
    public var parameters: Set<ParameterID>
    /// Matrices whose per-token `(input, gradient at output)` pairs to return (MEND, IBKE):
    /// `∂L/∂W = Σ_t outputGradient[t]ᵀ input[t]`.
    public var tokenPairs: Set<ParameterID>
    /// Hook points whose per-token gradient `∂L/∂activation` (`[N, width]`) to return: the
    /// gradient of the value after that point's interventions, as the rest of the pass reads it.
    public var activations: Set<HookKey>

    public init(parameters: Set<ParameterID> = [], tokenPairs: Set<ParameterID> = [], activations: Set<HookKey> = []) {
        self.parameters = parameters
        self.tokenPairs = tokenPairs
        self.activations = activations
    }
}

/// The per-token inputs of a linear layer and the loss gradient at its outputs.
public struct TokenPairs: Sendable {
    /// `[N, in]`.
    public var input: Tensor
    /// `[N, out]`.
    public var outputGradient: Tensor

    public init(input: Tensor, outputGradient: Tensor) {
        self.input = input
        self.outputGradient = outputGradient
    }
}

/// Gradients of a scalar loss returned by ``Tape/backward(dLogits:)``.
public struct Gradients: Sendable {
    /// Aligned with the interventions of the recorded pass: `[width]` for `.add`, `[N, width]`
    /// for `.replace`, the delta's shape for `.weightDelta`; nil for `.capture` (and for
    /// interventions below the recorded layers).
    public var interventions: [Tensor?]
    /// `∂L/∂W` for each requested parameter.
    public var parameters: [ParameterID: Tensor]
    /// Per-token pairs of each requested matrix.
    public var tokenPairs: [ParameterID: TokenPairs]
    /// `[N, width]` gradient at each requested hook point.
    public var activations: [HookKey: Tensor]
}

extension ParameterID {
    /// Whether the parameter is a matrix of the attention half of a block.
    var isAttention: Bool {
        switch kind {
        case .attentionNorm, .attentionQuery, .attentionKey, .attentionValue, .attentionOutput: true
        default: false
        }
    }

    /// Whether the parameter is a norm weight (a vector) rather than a matrix.
    public var isNorm: Bool { kind == .attentionNorm || kind == .feedForwardNorm }
}

extension TransformerConfig {
    /// Offset of a matrix's rows in its fused stored matrix (q/k/v in `qkv`, gate/up in
    /// `ffn_in`), i.e. of its outputs in the fused output row.
    func fusedRowOffset(_ kind: ParameterID.Kind) -> Int {
        switch kind {
        case .attentionKey: queryWidth
        case .attentionValue: queryWidth + keyValueWidth
        case .feedForwardUp: feedForward.isGated ? feedForwardSize : 0
        default: 0
        }
    }
}

/// The interventions of one pass, indexed by hook point, with the captures it makes.
/// `@unchecked Sendable`: `captures` is written unlocked by the one pass that uses the set, on the
/// thread running it; ``empty`` has no hooks, so it is never written.
final class InterventionSet: @unchecked Sendable {
    let list: [Intervention]
    /// Indices into `list` by hook point.
    let hooks: [HookKey: [Int]]
    /// Index into `list` of each weight delta.
    let weightDeltas: [ParameterID: Int]
    var captures: [HookKey: Tensor] = [:]

    static let empty = InterventionSet([], config: nil, rows: 0)

    init(_ list: [Intervention], config: TransformerConfig?, rows n: Int, weights: ModelWeights? = nil) {
        self.list = list
        var hooks: [HookKey: [Int]] = [:]
        var deltas: [ParameterID: Int] = [:]
        for (i, intervention) in list.enumerated() {
            switch intervention {
            case .capture(let point, let layer):
                hooks[HookKey(point, layer: layer), default: []].append(i)
            case .add(let point, let layer, let delta, let rows):
                if let config {
                    precondition(
                        delta.count == point.width(config),
                        "delta of \(delta.count) for \(point) of width \(point.width(config))")
                }
                for r in rows { precondition(r >= 0 && r < n, "row \(r) outside the batch of \(n)") }
                hooks[HookKey(point, layer: layer), default: []].append(i)
            case .replace(let point, let layer, let values):
                if let config {
                    precondition(
                        values.count == n * point.width(config),
                        "replacement \(values.shape) for \(n) rows of \(point)")
                }
                hooks[HookKey(point, layer: layer), default: []].append(i)
            case .weightDelta(let id, let delta):
                precondition(deltas[id] == nil, "two weight deltas for \(id)")
                if let config, let weights {
                    guard let shape = weights.shape(of: id, config: config) else { preconditionFailure("no matrix \(id)") }
                    precondition(!id.isNorm && delta.shape == shape, "delta \(delta.shape) for \(id) \(shape)")
                }
                deltas[id] = i
            }
        }
        self.hooks = hooks
        self.weightDeltas = deltas
    }

    func has(_ point: HookPoint, _ layer: Int) -> Bool { !hooks.isEmpty && hooks[HookKey(point, layer: layer)] != nil }

    func weightDelta(_ id: ParameterID) -> Tensor? {
        guard let i = weightDeltas[id], case .weightDelta(_, let delta) = list[i] else { return nil }
        return delta
    }

    /// Applies the interventions at a hook point to `n` rows of `width` floats, `ld` apart.
    func apply(_ point: HookPoint, layer: Int, _ p: UnsafeMutablePointer<Float>, rows n: Int, width: Int, ld: Int) {
        guard let indices = hooks[HookKey(point, layer: layer)] else { return }
        for i in indices {
            switch list[i] {
            case .capture:
                let t = Tensor(zeros: [n, width])
                for r in 0..<n { (t.pointer + r * width).update(from: p + r * ld, count: width) }
                captures[HookKey(point, layer: layer)] = t
            case .add(_, _, let delta, let rows):
                for r in rows { Kernels.addScaled(delta.pointer, 1, into: p + r * ld, count: width) }
            case .replace(_, _, let values):
                for r in 0..<n { (p + r * ld).update(from: values.pointer + r * width, count: width) }
            case .weightDelta:
                break
            }
        }
    }

    /// Backward of ``apply(_:layer:_:rows:width:ld:)``: records the gradients of its `.add` and
    /// `.replace` interventions from `dY` (the gradient after the point) and zeroes `dY`
    /// where a replacement cut the graph.
    func backward(
        _ point: HookPoint, layer: Int, _ dY: UnsafeMutablePointer<Float>, rows n: Int, width: Int, ld: Int,
        into gradients: inout [Tensor?]
    ) {
        guard let indices = hooks[HookKey(point, layer: layer)] else { return }
        for i in indices.reversed() {
            switch list[i] {
            case .add(_, _, _, let rows):
                let g = Tensor(zeros: [width])
                for r in rows { Kernels.addScaled(dY + r * ld, 1, into: g.pointer, count: width) }
                gradients[i] = g
            case .replace:
                let g = Tensor(zeros: [n, width])
                for r in 0..<n {
                    (g.pointer + r * width).update(from: dY + r * ld, count: width)
                    (dY + r * ld).update(repeating: 0, count: width)
                }
                gradients[i] = g
            case .capture, .weightDelta:
                break
            }
        }
    }
}

extension Transformer {
    /// Packed-row indices (as interventions take them) of positions in a batch.
    ///
    /// - Parameters:
    ///   - sequences: the batch, packed in order.
    ///   - positions: for each sequence, indices into its tokens.
    /// - Returns: `start(s) + p` for each sequence `s` and position `p`, in order.
    public static func packedRows(_ sequences: [[Int]], positions: [[Int]]) -> [Int] {
        precondition(positions.count == sequences.count, "one position list per sequence")
        var start = 0
        var rows: [Int] = []
        for (s, tokens) in sequences.enumerated() {
            for p in positions[s] {
                precondition(p >= 0 && p < tokens.count, "position \(p) outside sequence \(s)")
                rows.append(start + p)
            }
            start += tokens.count
        }
        return rows
    }
}
