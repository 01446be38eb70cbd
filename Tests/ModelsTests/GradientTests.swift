import Foundation
import TensorCore
import Testing

@testable import Models

/// Whole-model gradients (``Tape``) of the tiny checkpoints against central differences, and
/// the interventions and prefix reuse of the forward pass.
@Suite struct GradientTests {
    static let models = ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma"]
    /// Two sequences of a ragged batch.
    static let sequences = [[5, 17, 42, 9, 250, 33, 7], [100, 3, 64, 12]]

    static func load(_ name: String) throws -> Transformer {
        name == "tiny-gemma" ? try tinyGemma() : try ModelLoader.transformer(huggingFace: TinyReference.folder(name))
    }

    /// The tiny Llama with every Gemma 3 addition switched on: GeGLU, √C-scaled embeddings,
    /// per-head q/k norms and output norms with random weights near 1, and a window of 3 on
    /// block 0 (with RoPE of its own) while block 1 attends globally.
    static func tinyGemma() throws -> Transformer {
        let llama = try ModelLoader.transformer(huggingFace: TinyReference.folder("tiny-llama"))
        var c = llama.config
        c.feedForward = .gegluTanh
        c.embeddingScale = Float(c.hiddenSize).squareRoot() / 4
        c.queryKeyNorm = true
        c.outputNorms = true
        c.slidingWindow = .init(size: 3, localLayers: [0], inverseFrequencies: RotaryEmbedding.standard(headDim: c.headDim, base: 100))
        var weights = llama.weights
        func nearOne(_ count: Int, seed: UInt64) -> Tensor {
            let t = random([count], scale: 0.3, seed: seed)
            for i in 0..<count { t[i] += 1 }
            return t
        }
        for l in weights.blocks.indices {
            let seed = UInt64(1000 + 10 * l)
            weights.blocks[l].queryNorm = nearOne(c.headDim, seed: seed)
            weights.blocks[l].keyNorm = nearOne(c.headDim, seed: seed + 1)
            weights.blocks[l].postAttentionNorm = nearOne(c.hiddenSize, seed: seed + 2)
            weights.blocks[l].postFeedForwardNorm = nearOne(c.hiddenSize, seed: seed + 3)
        }
        return Transformer(config: c, weights: weights)
    }

    static func random(_ shape: [Int], scale: Float, seed: UInt64) -> Tensor {
        var rng = SplitMix64(seed: seed)
        let t = Tensor(zeros: shape)
        for i in 0..<t.count { t[i] = scale * (2 * rng.nextUnit() - 1) }
        return t
    }

    /// A next-token target for every row.
    static func targets(_ vocabularySize: Int) -> [Int] {
        sequences.joined().enumerated().map { i, t in (t * 7 + i * 13) % vocabularySize }
    }

    /// Mean cross-entropy of the targets over all rows.
    static func loss(_ model: Transformer, _ interventions: [Intervention]) throws -> Float {
        let logits = try model.forward(sequences, interventions: interventions, logits: .all).logits
        let t = targets(model.config.vocabularySize)
        return Losses.crossEntropy(
            logits: logits.pointer, rows: t.count, vocabularySize: model.config.vocabularySize,
            ldLogits: model.config.vocabularySize, targets: t, dLogits: nil, ldDLogits: 0)
    }

    /// The recorded pass's loss gradients.
    static func gradients(
        _ model: Transformer, _ interventions: [Intervention], request: GradientRequest = GradientRequest()
    ) throws -> Gradients {
        let tape = try model.record(sequences, interventions: interventions, logits: .all, gradients: request)
        return backward(tape, model)
    }

    static func backward(_ tape: Tape, _ model: Transformer) -> Gradients {
        let v = model.config.vocabularySize
        let t = targets(v)
        let dLogits = Tensor(zeros: tape.logits.shape)
        _ = Losses.crossEntropy(
            logits: tape.logits.pointer, rows: t.count, vocabularySize: v, ldLogits: v,
            targets: t, dLogits: dLogits.pointer, ldDLogits: v)
        return tape.backward(dLogits: dLogits)
    }

    /// Checks `gradient` against central differences of `loss(x + ε·u)` along the gradient's
    /// own direction and a random one (STYLE.md §5.5: ε = 1e-2, relative error ≤ 1e-2 of |g|).
    /// `step` overrides ε and switches to the 4-point formula (for deep models, whose float32
    /// loss carries more rounding than a 1e-2 step resolves).
    static func checkDirectional(
        _ gradient: Tensor, point x: Tensor, seed: UInt64, _ label: String, step: Float? = nil,
        loss: (Tensor) throws -> Float
    ) throws {
        let norm = MatMul.dot(gradient.pointer, gradient.pointer, gradient.count).squareRoot()
        #expect(norm > 1e-4, "\(label): gradient vanishes (\(norm))")
        let random = GradientTests.random(gradient.shape, scale: 1, seed: seed)
        let randomNorm = MatMul.dot(random.pointer, random.pointer, random.count).squareRoot()
        for (name, direction, length) in [("gradient", gradient, norm), ("random", random, randomNorm)] {
            var maxAbs: Float = 0
            for i in 0..<x.count { maxAbs = max(maxAbs, abs(x[i])) }
            let eps: Float = step ?? 1e-2 * max(1, maxAbs)
            func shifted(_ sign: Float) throws -> Float {
                let y = x.copy()
                Kernels.addScaled(direction.pointer, sign * eps / length, into: y.pointer, count: y.count)
                return try loss(y)
            }
            let numeric =
                step == nil
                ? (try shifted(1) - shifted(-1)) / (2 * eps)
                : (8 * (try shifted(1) - shifted(-1)) - (try shifted(2) - shifted(-2))) / (12 * eps)
            let analytic = MatMul.dot(gradient.pointer, direction.pointer, gradient.count) / length
            #expect(
                abs(numeric - analytic) <= 1e-2 * norm,
                "\(label) along the \(name) direction: numeric \(numeric), analytic \(analytic), |g| \(norm)")
        }
    }

    @Test(arguments: models)
    func deltaGradientMatchesFiniteDifferences(model name: String) throws {
        let model = try Self.load(name)
        let point = HookPoint.feedForwardOutput
        let delta = Self.random([model.config.hiddenSize], scale: 0.1, seed: 1)
        let rows = [2]
        let g = try Self.gradients(model, [.add(point, layer: 0, delta: delta, rows: rows)])
        try Self.checkDirectional(g.interventions[0]!, point: delta, seed: 2, "\(name) delta") { d in
            try Self.loss(model, [.add(point, layer: 0, delta: d, rows: rows)])
        }
    }

    @Test(arguments: models)
    func hookPointDeltasMatchFiniteDifferences(model name: String) throws {
        let model = try Self.load(name)
        for (i, point) in HookPoint.allCases.enumerated() {
            let delta = Self.random([point.width(model.config)], scale: 0.1, seed: UInt64(10 + i))
            let rows = [1, 8]
            let g = try Self.gradients(model, [.add(point, layer: 0, delta: delta, rows: rows)])
            try Self.checkDirectional(g.interventions[0]!, point: delta, seed: UInt64(20 + i), "\(name) \(point)") { d in
                try Self.loss(model, [.add(point, layer: 0, delta: d, rows: rows)])
            }
        }
    }

    @Test(arguments: models)
    func weightGradientsMatchFiniteDifferences(model name: String) throws {
        let model = try Self.load(name)
        var ids: [ParameterID] = [
            ParameterID(layer: 1, .feedForwardDown), ParameterID(layer: 0, .attentionQuery),
            ParameterID(layer: 0, .attentionKey), ParameterID(layer: 0, .attentionValue),
            ParameterID(layer: 0, .attentionOutput), ParameterID(layer: 0, .feedForwardUp),
            ParameterID(layer: 0, .attentionNorm), ParameterID(layer: 1, .feedForwardNorm),
        ]
        if model.config.feedForward == .swiglu { ids.append(ParameterID(layer: 0, .feedForwardGate)) }
        let g = try Self.gradients(model, [], request: GradientRequest(parameters: Set(ids)))
        for (i, id) in ids.enumerated() {
            let w = model.weights.tensor(id, config: model.config)!
            let original = w.copy()
            defer { w.pointer.update(from: original.pointer, count: w.count) }
            try Self.checkDirectional(g.parameters[id]!, point: original, seed: UInt64(30 + i), "\(name) \(id)") { x in
                w.pointer.update(from: x.pointer, count: w.count)
                return try Self.loss(model, [])
            }
        }
    }

    @Test(arguments: models)
    func weightDeltaGradientMatchesFiniteDifferences(model name: String) throws {
        let model = try Self.load(name)
        for (i, id) in [ParameterID(layer: 0, .feedForwardUp), ParameterID(layer: 1, .attentionValue)].enumerated() {
            let shape = model.weights.tensor(id, config: model.config)!.shape
            let delta = Self.random(shape, scale: 0.01, seed: UInt64(40 + i))
            let g = try Self.gradients(model, [.weightDelta(id, delta)], request: GradientRequest(parameters: [id]))
            // ∂L/∂ΔW = ∂L/∂W.
            let dDelta = g.interventions[0]!
            let dW = g.parameters[id]!
            #expect(dDelta.scalars == dW.scalars, "\(name) \(id)")
            try Self.checkDirectional(dDelta, point: delta, seed: UInt64(50 + i), "\(name) ΔW \(id)") { d in
                try Self.loss(model, [.weightDelta(id, d)])
            }
            // The delta acts as W + ΔW.
            let w = model.weights.tensor(id, config: model.config)!
            let original = w.copy()
            Kernels.addScaled(delta.pointer, 1, into: w.pointer, count: w.count)
            let edited = try Self.loss(model, [])
            w.pointer.update(from: original.pointer, count: w.count)
            let withDelta = try Self.loss(model, [.weightDelta(id, delta)])
            #expect(abs(edited - withDelta) <= 1e-5 * max(1, abs(edited)), "\(name) \(id)")
        }
    }

    @Test(arguments: models)
    func tokenPairsSumToTheWeightGradient(model name: String) throws {
        let model = try Self.load(name)
        let id = ParameterID(layer: 1, .feedForwardDown)
        let g = try Self.gradients(model, [], request: GradientRequest(parameters: [id], tokenPairs: [id]))
        let pairs = g.tokenPairs[id]!
        let dW = g.parameters[id]!
        let n = Self.sequences.joined().count
        let out = dW.shape[0]
        let inputs = dW.shape[1]
        #expect(pairs.input.shape == [n, inputs] && pairs.outputGradient.shape == [n, out])
        var worst: Float = 0
        var scale: Float = 0
        for j in 0..<out {
            for k in 0..<inputs {
                var sum: Float = 0
                for t in 0..<n { sum += pairs.outputGradient[t * out + j] * pairs.input[t * inputs + k] }
                worst = max(worst, abs(sum - dW[j * inputs + k]))
                scale = max(scale, abs(dW[j * inputs + k]))
            }
        }
        #expect(worst <= 1e-5 * max(scale, 1e-3), "\(name): \(worst)")
    }

    @Test(arguments: models)
    func activationGradientsSumToTheDeltaGradient(model name: String) throws {
        let model = try Self.load(name)
        let n = Self.sequences.joined().count
        let w = model.config.hiddenSize
        for point in HookPoint.allCases {
            let key = HookKey(point, layer: 0)
            let width = point.width(model.config)
            let rows = [2, 6, 6]
            let g = try Self.gradients(
                model, [.add(point, layer: 0, delta: Tensor(zeros: [width]), rows: rows)],
                request: GradientRequest(activations: [key, HookKey(.layerOutput, layer: 1)]))
            let activation = g.activations[key]!
            let delta = g.interventions[0]!
            #expect(activation.shape == [n, width])
            #expect(g.activations[HookKey(.layerOutput, layer: 1)]!.shape == [n, w])
            for j in 0..<width {
                let sum = rows.reduce(Float(0)) { $0 + activation[$1 * width + j] }
                #expect(abs(sum - delta[j]) <= 1e-6 * max(1, abs(sum)), "\(name) \(point)")
            }
        }
    }

    @Test(arguments: models)
    func captureReturnsTheKeyAndZeroDeltaChangesNothing(model name: String) throws {
        let model = try Self.load(name)
        let c = model.config
        let n = Self.sequences.joined().count
        let f = c.feedForwardSize
        let plain = try model.forward(Self.sequences, logits: .all)
        let result = try model.forward(
            Self.sequences,
            interventions: [
                .capture(.feedForwardInput, layer: 1), .capture(.feedForwardHidden, layer: 1),
                .add(.feedForwardOutput, layer: 1, delta: Tensor(zeros: [c.hiddenSize]), rows: [0, 3]),
                .add(.attentionOutput, layer: 0, delta: Tensor(zeros: [c.hiddenSize]), rows: [5]),
            ], logits: .all)
        var worst: Float = 0
        for i in 0..<plain.count { worst = max(worst, abs(plain[i] - result.logits[i])) }
        #expect(worst <= 1e-5, "\(name): logits moved by \(worst)")

        // The key by hand: act(input · W_inᵀ + b) from the captured MLP input.
        let input = result.captures[HookKey(.feedForwardInput, layer: 1)]!
        let key = result.captures[HookKey(.feedForwardHidden, layer: 1)]!
        #expect(key.shape == [n, f])
        let block = model.weights.blocks[1]
        let feedForwardInput = block.feedForwardInput.scalars
        let rows = c.feedForwardInputRows
        worst = 0
        for t in 0..<n {
            var pre = [Float](repeating: 0, count: rows)
            for j in 0..<rows {
                var s: Double = 0
                for k in 0..<c.hiddenSize {
                    s += Double(input[t * c.hiddenSize + k]) * Double(feedForwardInput[j * c.hiddenSize + k])
                }
                pre[j] = Float(s) + (block.feedForwardInputBias?[j] ?? 0)
            }
            for j in 0..<f {
                let x = pre[j]
                let gelu = 0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x * x * x)))
                let expected: Float =
                    switch c.feedForward {
                    case .swiglu: x / (1 + exp(-x)) * pre[f + j]
                    case .geluTanh: gelu
                    case .gegluTanh: gelu * pre[f + j]
                    }
                worst = max(worst, abs(key[t * f + j] - expected) / max(1, abs(expected)))
            }
        }
        #expect(worst <= 1e-5, "\(name): key differs by \(worst)")
    }

    @Test(arguments: models)
    func replaceWithTheCapturedValueChangesNothing(model name: String) throws {
        let model = try Self.load(name)
        let captured = try model.forward(Self.sequences, interventions: [.capture(.layerOutput, layer: 0)]).captures
        let value = captured[HookKey(.layerOutput, layer: 0)]!
        let plain = try model.forward(Self.sequences, logits: .all)
        let replaced = try model.forward(Self.sequences, interventions: [.replace(.layerOutput, layer: 0, values: value)])
        var worst: Float = 0
        for i in 0..<plain.count { worst = max(worst, abs(plain[i] - replaced.logits[i])) }
        #expect(worst <= 1e-5, "\(name): \(worst)")
        // Nothing flows below a replacement; its own gradient is that of the residual.
        let id = ParameterID(layer: 0, .feedForwardDown)
        let g = try Self.gradients(
            model, [.replace(.layerOutput, layer: 0, values: value)],
            request: GradientRequest(parameters: [id]))
        #expect(g.parameters[id]!.scalars.allSatisfy { $0 == 0 })
        #expect(g.interventions[0]!.shape == [Self.sequences.joined().count, model.config.hiddenSize])
        try Self.checkDirectional(g.interventions[0]!, point: value, seed: 90, "\(name) replaced values") { x in
            try Self.loss(model, [.replace(.layerOutput, layer: 0, values: x)])
        }
    }

    @Test(arguments: models)
    func prefixKeepsItsOwnInterventions(model name: String) throws {
        let model = try Self.load(name)
        let c = model.config
        let id = ParameterID(layer: 0, .attentionOutput)
        let below: [Intervention] = [
            .weightDelta(id, Self.random(model.weights.tensor(id, config: c)!.shape, scale: 0.05, seed: 91)),
            .add(.layerOutput, layer: 0, delta: Self.random([c.hiddenSize], scale: 0.5, seed: 92), rows: [4]),
        ]
        let above: [Intervention] = [.capture(.feedForwardHidden, layer: 1)]
        let full = try model.forward(Self.sequences, interventions: below + above, logits: .all)
        let prefix = try model.prefix(Self.sequences, layers: 1, interventions: below)
        let reused = try model.forward(prefix, interventions: above, logits: .all)
        var worst: Float = 0
        for i in 0..<full.logits.count { worst = max(worst, abs(full.logits[i] - reused.logits[i])) }
        let key = HookKey(.feedForwardHidden, layer: 1)
        for i in 0..<full.captures[key]!.count {
            worst = max(worst, abs(full.captures[key]![i] - reused.captures[key]![i]))
        }
        #expect(worst <= 1e-5, "\(name): \(worst)")
    }

    @Test(arguments: models)
    func prefixReturnsItsCaptures(model name: String) throws {
        let model = try Self.load(name)
        let captures: [Intervention] = [.capture(.feedForwardHidden, layer: 0), .capture(.layerOutput, layer: 0)]
        let full = try model.forward(Self.sequences, interventions: captures, logits: .none)
        let prefix = try model.prefix(Self.sequences, layers: 1, interventions: captures)
        #expect(Set(prefix.captures.keys) == Set(full.captures.keys))
        for (key, value) in full.captures {
            #expect(prefix.captures[key]?.shape == value.shape, "\(name) \(key)")
            #expect(prefix.captures[key]?.scalars == value.scalars, "\(name) \(key)")
        }
    }

    @Test(arguments: models)
    func prefixReuseMatchesTheFullPass(model name: String) throws {
        let model = try Self.load(name)
        let c = model.config
        let delta = Self.random([c.hiddenSize], scale: 0.1, seed: 60)
        let id = ParameterID(layer: 1, .feedForwardDown)
        let interventions: [Intervention] = [.add(.feedForwardOutput, layer: 1, delta: delta, rows: [3, 9])]
        let request = GradientRequest(parameters: [id])
        let fullTape = try model.record(Self.sequences, interventions: interventions, logits: .all, gradients: request)
        #expect(fullTape.lowestLayer == 1)
        let full = Self.backward(fullTape, model)

        let prefix = try model.prefix(Self.sequences, layers: 1)
        let forward = try model.forward(prefix, interventions: interventions, logits: .all)
        let tape = try model.record(prefix, interventions: interventions, logits: .all, gradients: request)
        let reused = Self.backward(tape, model)
        func difference(_ a: Tensor, _ b: Tensor) -> Float {
            var worst: Float = 0
            var scale: Float = 1e-6
            for i in 0..<a.count {
                worst = max(worst, abs(a[i] - b[i]))
                scale = max(scale, abs(a[i]))
            }
            return worst / scale
        }
        #expect(difference(fullTape.logits, forward.logits) <= 1e-5, "\(name)")
        #expect(difference(fullTape.logits, tape.logits) <= 1e-5, "\(name)")
        #expect(difference(full.interventions[0]!, reused.interventions[0]!) <= 1e-4, "\(name)")
        #expect(difference(full.parameters[id]!, reused.parameters[id]!) <= 1e-4, "\(name)")
    }

    @Test func packedRowsFollowTheBatch() {
        #expect(Transformer.packedRows(Self.sequences, positions: [[0, 6], [3]]) == [0, 6, 10])
    }

    @Test func logitsAtSelectedPositionsGiveTheSameGradients() throws {
        let model = try Self.load("tiny-llama")
        let v = model.config.vocabularySize
        let delta = Self.random([model.config.hiddenSize], scale: 0.1, seed: 70)
        let interventions: [Intervention] = [.add(.feedForwardOutput, layer: 0, delta: delta, rows: [1])]
        // Loss on the last token of each sequence only.
        let targets = [11, 22]
        let last = try model.record(Self.sequences, interventions: interventions, logits: .last)
        let dLast = Tensor(zeros: last.logits.shape)
        _ = Losses.crossEntropy(
            logits: last.logits.pointer, rows: 2, vocabularySize: v, ldLogits: v, targets: targets,
            dLogits: dLast.pointer, ldDLogits: v)
        let all = try model.record(Self.sequences, interventions: interventions, logits: .all)
        let dAll = Tensor(zeros: all.logits.shape)
        let ends = [Self.sequences[0].count - 1, Self.sequences.joined().count - 1]
        for (i, r) in ends.enumerated() { (dAll.pointer + r * v).update(from: dLast.pointer + i * v, count: v) }
        let a = last.backward(dLogits: dLast).interventions[0]!
        let b = all.backward(dLogits: dAll).interventions[0]!
        for i in 0..<a.count { #expect(abs(a[i] - b[i]) <= 1e-5 * max(1, abs(b[i]))) }
    }
}

/// Gradients on the default model (SmolLM2-135M, 30 layers) against central differences:
/// the delta at the MLP output of layer 8 and `blk.8.ffn_down`, from a cached prefix.
@Suite(.enabled(if: DefaultModel.isAvailable, "default model not fetched (ibke model fetch)"))
struct DefaultModelGradientTests {
    @Test func layer8GradientsMatchFiniteDifferences() throws {
        let model = try #require(DefaultModel.transformer)
        let c = model.config
        let v = c.vocabularySize
        var rng = SplitMix64(seed: 5)
        let prompts = (0..<2).map { _ in (0..<12).map { _ in Int(rng.next() % UInt64(v)) } }
        let targets = [Int(rng.next() % UInt64(v)), Int(rng.next() % UInt64(v))]
        let rows = [7, 12 + 9]  // a "subject token" of each prompt
        let id = ParameterID(layer: 8, .feedForwardDown)
        let prefix = try model.prefix(prompts, layers: 8)
        func loss(_ interventions: [Intervention]) throws -> Float {
            let logits = try model.forward(prefix, interventions: interventions, logits: .last).logits
            return Losses.crossEntropy(
                logits: logits.pointer, rows: 2, vocabularySize: v, ldLogits: v,
                targets: targets, dLogits: nil, ldDLogits: 0)
        }
        let delta = Tensor(zeros: [c.hiddenSize])
        let tape = try model.record(
            prefix, interventions: [.add(.feedForwardOutput, layer: 8, delta: delta, rows: rows)],
            logits: .last, gradients: GradientRequest(parameters: [id]))
        #expect(tape.lowestLayer == 8)
        let dLogits = Tensor(zeros: tape.logits.shape)
        _ = Losses.crossEntropy(
            logits: tape.logits.pointer, rows: 2, vocabularySize: v, ldLogits: v, targets: targets,
            dLogits: dLogits.pointer, ldDLogits: v)
        let g = tape.backward(dLogits: dLogits)
        try GradientTests.checkDirectional(g.interventions[0]!, point: delta, seed: 80, "SmolLM2 delta", step: 0.2) { d in
            try loss([.add(.feedForwardOutput, layer: 8, delta: d, rows: rows)])
        }
        let zero = Tensor(zeros: model.weights.tensor(id, config: c)!.shape)
        try GradientTests.checkDirectional(g.parameters[id]!, point: zero, seed: 81, "SmolLM2 \(id)", step: 0.2) { d in
            try loss([.weightDelta(id, d)])
        }
    }
}
