import TensorCore
import Testing

@testable import Models

/// Prefixes whose sequences continue cached earlier tokens (``Transformer/prefix(_:past:layers:interventions:)``)
/// against the unsplit sequences: the same logits at the new tokens, the same delta gradients
/// when the delta is at or after the first new token, and caches that passes leave untouched.
@Suite struct PastPrefixTests {
    /// Three sequences split into past and new tokens: the second has no past.
    static let full = [[5, 17, 42, 9, 250, 33, 7], [100, 3, 64, 12], [8, 9, 10, 11, 12, 13]]
    static let past = [[5, 17, 42], [], [8, 9, 10, 11]]
    static var new: [[Int]] { zip(full, past).map { Array($0.dropFirst($1.count)) } }
    /// The positions of the new tokens in the full sequences.
    static var newPositions: [[Int]] { zip(full, past).map { Array($1.count..<$0.count) } }
    /// The first new token of each sequence (an editor's delta row), as full and new rows.
    static var firstFullRows: [Int] { Transformer.packedRows(full, positions: past.map { [$0.count] }) }
    static let firstNewRows = Transformer.packedRows(new, positions: [[0], [0], [0]])

    /// max |a − b| / max |a|.
    static func difference(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
        var worst: Float = 0
        var scale: Float = 1e-6
        for i in 0..<a.count {
            worst = max(worst, abs(a[i] - b[i]))
            scale = max(scale, abs(a[i]))
        }
        return worst / scale
    }

    /// Mean cross-entropy gradients of a tape against fixed targets of its logit rows.
    static func backward(_ tape: Tape, _ model: Transformer) -> Gradients {
        let v = model.config.vocabularySize
        let rows = tape.logits.shape[0]
        let targets = (0..<rows).map { ($0 * 37 + 11) % v }
        let dLogits = Tensor(zeros: tape.logits.shape)
        _ = Losses.crossEntropy(
            logits: tape.logits.pointer, rows: rows, vocabularySize: v, ldLogits: v,
            targets: targets, dLogits: dLogits.pointer, ldDLogits: v)
        return tape.backward(dLogits: dLogits)
    }

    @Test(arguments: GradientTests.models, [0, 1])
    func logitsMatchTheFullPass(model name: String, layers: Int) throws {
        let model = try GradientTests.load(name)
        let c = model.config
        let delta = GradientTests.random([c.hiddenSize], scale: 0.5, seed: 200)
        // A delta in the prefix layers too, when there are any.
        let belowDelta = GradientTests.random([c.hiddenSize], scale: 0.5, seed: 201)
        func below(_ row: Int) -> [Intervention] {
            layers == 0 ? [] : [.add(.layerOutput, layer: 0, delta: belowDelta, rows: [row])]
        }
        let expected = try model.forward(
            Self.full,
            interventions: below(Self.firstFullRows[2])
                + [.add(.feedForwardOutput, layer: layers, delta: delta, rows: Self.firstFullRows)],
            logits: .positions(Self.newPositions))
        let prefix = try model.prefix(Self.new, past: Self.past, layers: layers, interventions: below(Self.firstNewRows[2]))
        #expect(prefix.pastLengths == Self.past.map(\.count))
        #expect(prefix.residual.shape == [Self.new.joined().count, c.hiddenSize])
        let reused = try model.forward(
            prefix, interventions: [.add(.feedForwardOutput, layer: layers, delta: delta, rows: Self.firstNewRows)])
        #expect(Self.difference(expected.logits, reused.logits) <= 1e-4, "\(name) from layer \(layers)")
        // The delta matters: without it the logits differ.
        let plain = try model.forward(prefix)
        #expect(Self.difference(expected.logits, plain.logits) > 1e-3, "\(name) from layer \(layers)")
    }

    @Test(arguments: GradientTests.models, [0, 1])
    func deltaGradientsMatchTheUnsplitPrefix(model name: String, layers: Int) throws {
        let model = try GradientTests.load(name)
        let c = model.config
        let unsplit = try model.prefix(Self.full, layers: layers)
        let split = try model.prefix(Self.new, past: Self.past, layers: layers)
        // `.attentionInput` makes the backward go through the attention of layer `layers` too.
        for (i, point) in [HookPoint.feedForwardOutput, .layerOutput, .attentionInput].enumerated() {
            let delta = GradientTests.random([c.hiddenSize], scale: 0.1, seed: 210 + UInt64(i))
            let fullTape = try model.record(
                unsplit, interventions: [.add(point, layer: layers, delta: delta, rows: Self.firstFullRows)],
                logits: .positions(Self.newPositions))
            let tape = try model.record(
                split, interventions: [.add(point, layer: layers, delta: delta, rows: Self.firstNewRows)])
            #expect(Self.difference(fullTape.logits, tape.logits) <= 1e-4, "\(name) \(point) at \(layers)")
            let expected = Self.backward(fullTape, model).interventions[0]!
            let g = Self.backward(tape, model).interventions[0]!
            #expect(MatMul.dot(expected.pointer, expected.pointer, expected.count) > 1e-8, "\(name) \(point)")
            #expect(Self.difference(expected, g) <= 1e-4, "\(name) \(point) at \(layers)")
        }
    }

    @Test(arguments: GradientTests.models)
    func passesLeaveTheCachesAsThePrefixMadeThem(model name: String) throws {
        let model = try GradientTests.load(name)
        let c = model.config
        let prefix = try model.prefix(Self.new, past: Self.past, layers: 0)
        let request = GradientRequest(activations: [HookKey(.attentionInput, layer: 0)])
        func pass(_ seed: UInt64) throws -> (Tape, [Intervention]) {
            let delta = GradientTests.random([c.hiddenSize], scale: 0.5, seed: seed)
            let interventions: [Intervention] = [.add(.attentionInput, layer: 0, delta: delta, rows: Self.firstNewRows)]
            return (try model.record(prefix, interventions: interventions, gradients: request), interventions)
        }
        let (first, interventions) = try pass(220)
        let firstGradients = Self.backward(first, model)
        let (second, _) = try pass(220)
        let secondGradients = Self.backward(second, model)
        #expect(first.logits.scalars == second.logits.scalars, "\(name)")
        #expect(firstGradients.interventions[0]!.scalars == secondGradients.interventions[0]!.scalars, "\(name)")
        let key = HookKey(.attentionInput, layer: 0)
        #expect(firstGradients.activations[key]!.scalars == secondGradients.activations[key]!.scalars, "\(name)")
        #expect(prefix.pastLengths == Self.past.map(\.count))

        // A pass with another delta in between: the first tape still differentiates its own pass.
        let (third, _) = try pass(221)
        #expect(third.logits.scalars != first.logits.scalars, "\(name)")
        let again = Self.backward(first, model)
        #expect(again.interventions[0]!.scalars == firstGradients.interventions[0]!.scalars, "\(name)")
        #expect(try model.forward(prefix, interventions: interventions).logits.scalars == first.logits.scalars, "\(name)")
    }

    @Test(arguments: GradientTests.models, [false, true])
    func selectingKeepsTheChosenSequences(model name: String, withPast: Bool) throws {
        let model = try GradientTests.load(name)
        let capture: [Intervention] = [.capture(.layerOutput, layer: 0)]
        let prefix =
            withPast
            ? try model.prefix(Self.new, past: Self.past, layers: 1, interventions: capture)
            : try model.prefix(Self.full, layers: 1, interventions: capture)
        let all = try model.forward(prefix).logits
        let chosen = [2, 0]
        let selected = prefix.selecting(chosen)
        #expect(selected.sequences == chosen.map { prefix.sequences[$0] })
        #expect(selected.pastLengths == chosen.map { prefix.pastLengths[$0] })
        // The packed rows of the chosen sequences, in the chosen order.
        let ordered = chosen.flatMap { s in
            Transformer.packedRows(
                prefix.sequences,
                positions: prefix.sequences.indices.map {
                    $0 == s ? Array(prefix.sequences[s].indices) : []
                })
        }
        let v = model.config.vocabularySize
        let w = model.config.hiddenSize
        let expected = Tensor(zeros: [ordered.count, v])
        let expectedCapture = Tensor(zeros: [ordered.count, w])
        let captured = prefix.captures[HookKey(.layerOutput, layer: 0)]!
        for (i, r) in ordered.enumerated() {
            (expected.pointer + i * v).update(from: all.pointer + r * v, count: v)
            (expectedCapture.pointer + i * w).update(from: captured.pointer + r * w, count: w)
        }
        let logits = try model.forward(selected).logits
        #expect(Self.difference(expected, logits) <= 1e-5, "\(name)")
        #expect(selected.captures[HookKey(.layerOutput, layer: 0)]!.scalars == expectedCapture.scalars, "\(name)")
    }
}
