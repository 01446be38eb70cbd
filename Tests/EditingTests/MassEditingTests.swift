import Foundation
import ModelFormats
import Models
import TensorCore
import Testing

@testable import Editing

@Suite struct MassEditingTests {
    /// Random `[rows][width]` vectors in ±1.
    static func vectors(_ rows: Int, _ width: Int, seed: UInt64) -> [[Float]] {
        var rng = SplitMix64(seed: seed)
        return (0..<rows).map { _ in (0..<width).map { _ in Float(rng.nextUnit() * 2 - 1) } }
    }

    /// `A Aᵀ / F + 0.01·I`, a second moment of F-dimensional keys.
    static func secondMoment(_ f: Int, seed: UInt64) -> Tensor {
        let a = vectors(f, f, seed: seed).flatMap { $0.map(Double.init) }
        var c = DenseSolve.multiply(a, a, m: f, n: f, k: f, transposeB: true).map { $0 / Double(f) }
        for i in 0..<f { c[i * f + i] += 0.01 }
        return Tensor(shape: [f, f], values: c.map { Float($0) })
    }

    /// `left · right` in float64, `[C, F]`.
    static func product(_ update: (left: Tensor, right: Tensor)) -> [Double] {
        let c = update.left.shape[0]
        let n = update.left.shape[1]
        let f = update.right.shape[1]
        return DenseSolve.multiply(update.left.scalars.map(Double.init), update.right.scalars.map(Double.init), m: c, n: f, k: n)
    }

    static func maxDifference(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    /// MEMIT's Woodbury form solves `ΔW (λC + KKᵀ) = R Kᵀ`.
    @Test func memitUpdateSolvesTheNormalEquations() throws {
        let f = 16
        let width = 8
        let n = 3
        let lambda = 5.0
        let c = Self.secondMoment(f, seed: 1)
        let targets = MassEditing.LayerTargets(keys: Self.vectors(n, f, seed: 2), residuals: Self.vectors(n, width, seed: 3))
        let update = try MEMIT.update(targets, factor: try DenseSolve.CholeskyFactor(regularizing: c), lambda: lambda)
        #expect(update.left.shape == [width, n] && update.right.shape == [n, f])
        let keys = MassEditing.columns(targets.keys)  // [F, n]
        var a = DenseSolve.multiply(keys, keys, m: f, n: f, k: n, transposeB: true)
        for i in 0..<(f * f) { a[i] += lambda * Double(c[i]) }
        let lhs = DenseSolve.multiply(Self.product(update), a, m: width, n: f, k: f)
        let rhs = DenseSolve.multiply(MassEditing.columns(targets.residuals), keys, m: width, n: f, k: n, transposeB: true)
        #expect(Self.maxDifference(lhs, rhs) < 1e-4)
    }

    /// AlphaEdit's update solves `(P S + αI) M = P K`, leaves the preserved directions (C's large
    /// eigenvectors) unchanged, and the n×n form equals the F×F one with an empty key cache.
    @Test func alphaEditUpdateStaysInTheNullSpace() throws {
        let f = 16
        let width = 8
        let n = 2
        let alpha = 0.5
        let c = Self.secondMoment(f, seed: 4)
        let (values, vectors) = try DenseSolve.symmetricEigen(c)
        let threshold = Double(values[f / 2])
        let (p, kept) = AlphaEdit.projector(values: values, vectors: vectors, threshold: threshold, fraction: nil)
        #expect(kept == f / 2)
        #expect(Self.maxDifference(DenseSolve.multiply(p, p, m: f, n: f, k: f), p) < 1e-6)  // idempotent
        let targets = MassEditing.LayerTargets(keys: Self.vectors(n, f, seed: 5), residuals: Self.vectors(n, width, seed: 6))
        let small = try AlphaEdit.update(targets, projector: p, keyCache: nil, alpha: alpha)
        let full = try AlphaEdit.update(targets, projector: p, keyCache: [Double](repeating: 0, count: f * f), alpha: alpha)
        #expect(Self.maxDifference(Self.product(small), Self.product(full)) < 1e-5)
        let delta = Self.product(small)
        for i in kept..<f {  // eigenvectors above the threshold: ΔW v = 0
            let v = (0..<f).map { Double(vectors[i * f + $0]) }
            let mapped = DenseSolve.multiply(delta, v, m: width, n: 1, k: f)
            #expect(mapped.allSatisfy { abs($0) < 1e-5 })
        }
        // With a key cache: (P (KKᵀ + cache) + αI) M = P K, M = rightᵀ.
        let cacheKeys = MassEditing.columns(Self.vectors(4, f, seed: 7))
        let cache = DenseSolve.multiply(cacheKeys, cacheKeys, m: f, n: f, k: 4, transposeB: true)
        let cached = try AlphaEdit.update(targets, projector: p, keyCache: cache, alpha: alpha)
        let keys = MassEditing.columns(targets.keys)
        var s = DenseSolve.multiply(keys, keys, m: f, n: f, k: n, transposeB: true)
        for i in 0..<(f * f) { s[i] += cache[i] }
        var a = DenseSolve.multiply(p, s, m: f, n: f, k: f)
        for i in 0..<f { a[i * f + i] += alpha }
        let m = MassEditing.transpose(cached.right.scalars.map(Double.init), rows: n, columns: f)  // [F, n]
        let lhs = DenseSolve.multiply(a, m, m: f, n: n, k: f)
        #expect(Self.maxDifference(lhs, DenseSolve.multiply(p, keys, m: f, n: n, k: f)) < 1e-5)
        // The fraction rule keeps the smallest eigenvalues within the budget.
        let (_, byFraction) = AlphaEdit.projector(values: values, vectors: vectors, threshold: 0, fraction: 1e-3)
        let budget = 1e-3 * values.reduce(0) { $0 + Double($1) }
        #expect(values.prefix(byFraction).reduce(0) { $0 + Double($1) } <= budget)
        #expect(byFraction == f || values.prefix(byFraction + 1).reduce(0) { $0 + Double($1) } > budget)
    }

    /// On the tiny models (Llama, and Gemma 3 with its output norms) both editors raise each
    /// target's probability, leave the model as they found it, and AlphaEdit's committed keys
    /// switch it to the cached solve.
    @Test(arguments: ["tiny-llama", "tiny-gemma3"])
    func memitAndAlphaEditEditTheTinyModel(_ name: String) throws {
        let model = try LanguageModel.load(TestModels.fixtures.appendingPathComponent(name))
        var h = MassEditingHyperparameters.defaults(layerCount: 2)
        h.layers = [0]  // z at layer 0's output (an edit of the last layer's output reaches no later position)
        h.optimization.steps = 8
        h.optimization.clampNormFactor = 4
        h.mom2UpdateWeight = 0.1  // C here is random: let the keys dominate
        h.optimization.learningRate = 0.5
        let c = Self.secondMoment(model.config.feedForwardSize, seed: 8)
        let requests = try [
            EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city"),
            EditRequest(prompt: "{} works at", subject: "Bob", targetNew: "a small shop"),
        ]
        .enumerated().map { try $1.prepared(for: model, index: $0) }
        let before = try model.score(requests.map { ContinuationRequest(prompt: $0.prompt, target: $0.target) })
        let weights = model.transformer.weights.blocks[0].feedForwardDown.scalars
        var alpha = h
        alpha.nullspaceThreshold = 1e9  // P = I
        alpha.l2 = 1
        let alphaEdit = AlphaEdit(hyperparameters: alpha, statistics: SecondMomentSource { _ in c })
        for editor in [MEMIT(hyperparameters: h, statistics: SecondMomentSource { _ in c }) as any Editor, alphaEdit] {
            let delta = try editor.edit(requests, in: model)
            #expect(delta.parameters == [ParameterID(layer: 0, .feedForwardDown)])
            #expect(model.transformer.weights.blocks[0].feedForwardDown.scalars == weights)
            let applied = try model.transformer.apply(delta)
            let after = try model.score(requests.map { ContinuationRequest(prompt: $0.prompt, target: $0.target) })
            for (b, a) in zip(before, after) { #expect(a.totalLogProb > b.totalLogProb + 0.1, "\(name) \(editor.name)") }
            if editor === alphaEdit {
                try alphaEdit.commit(requests, in: model)
                let second = try alphaEdit.edit(requests, in: model)
                #expect(second.entries.count == 1 && second.entries[0].update.materialized().scalars.allSatisfy(\.isFinite))
            }
            applied.revert()
        }
        #expect(alphaEdit.nullSpaceDimensions == [0: model.config.feedForwardSize])
    }

    /// Through Gemma's post-feed-forward norm: a change of the norm's output that some input
    /// reaches is recovered exactly, at the input's own scale; one that no input reaches (a
    /// random one, part of which would rescale the output) is met as closely as any input can,
    /// far closer than writing the residual as the input change.
    @Test func normInputChangeMovesTheNormOutput() {
        var rng = SplitMix64(seed: 21)
        let c = 640
        let eps: Float = 1e-6
        func random(_ scale: Float) -> [Float] { (0..<c).map { _ in scale * (2 * rng.nextUnit() - 1) } }
        let m = random(3)
        var w = (0..<c).map { _ in Float(exp(4 * rng.nextUnit())) }  // 1 to 55, as Gemma's weights spread
        w[7] = 1e-4
        func norm(_ x: [Float]) -> [Double] {
            let rms = (x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(c) + Double(eps)).squareRoot()
            return x.indices.map { Double(w[$0]) * Double(x[$0]) / rms }
        }
        func length(_ x: [Double]) -> Double { x.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        let y = norm(m)
        /// How far the new input's output lands from `y + r`, and its scale over `m`'s.
        func miss(_ r: [Float]) -> (error: Double, scale: Double) {
            let change = MassEditing.normInputChange(moving: r, output: m, weight: w, epsilon: eps)
            let input = zip(m, change).map { $0 + $1 }
            let moved = norm(input)
            return (
                length(y.indices.map { moved[$0] - y[$0] - Double(r[$0]) }),
                length(input.map(Double.init)) / length(m.map(Double.init))
            )
        }
        // Reachable: the output change of a nearby input.
        let reachable = zip(norm(zip(m, random(0.3)).map { $0 + $1 }), y).map { Float($0 - $1) }
        let exact = miss(reachable)
        #expect(exact.error < 1e-3 * length(reachable.map(Double.init)), "\(exact)")
        #expect(abs(exact.scale - 1) < 1e-4)
        // Random, 5% of the output: most of it is met; the naive write misses by far more.
        var r = random(1)
        r = r.map { $0 * Float(0.05 * length(y) / length(r.map(Double.init))) }
        let closest = miss(r)
        #expect(closest.error < 0.25 * length(r.map(Double.init)), "\(closest)")
        let naive = norm(zip(m, r).map { $0 + $1 })
        #expect(length(y.indices.map { naive[$0] - y[$0] - Double(r[$0]) }) > 5 * closest.error)
    }

    @Test func hyperparametersAcceptReferenceKeysAndRefuseBadOnes() throws {
        func read(_ object: JSONObject, alpha: Bool = false) throws -> MassEditingHyperparameters {
            var reader = HyperparameterReader(object: object, file: "h.yaml")
            return try MassEditingHyperparameters(reading: &reader, layerCount: 30, alphaEdit: alpha)
        }
        let h = try read([
            "layers": .array([.int(3), .int(4)]), "mom2_update_weight": .double(2e4), "v_num_grad_steps": .int(10),
            "alg_name": .string("MEMIT"), "mom2_dataset": .string("wikipedia"),
        ])
        #expect(h.layers == [3, 4] && h.mom2UpdateWeight == 2e4 && h.optimization.steps == 10)
        let a = try read(["nullspace_threshold": .double(1e-3), "L2": .double(1), "mom2_update_weight": .double(1)], alpha: true)
        #expect(a.nullspaceThreshold == 1e-3 && a.l2 == 1)
        // This project's keys of the value optimisation, beside the references'.
        let ours = try read(["v_loss_threshold": .double(1e-2), "v_first_token_weight": .double(3)])
        #expect(ours.optimization.lossThreshold == 1e-2 && ours.optimization.firstTokenWeight == 3)
        #expect(throws: EditorError.self) { try read(["v_first_token_weight": .double(0)]) }
        let variants = try read(["prompt_variants": .int(3)])
        #expect(variants.optimization.promptVariants == 3)
        #expect(variants.json(alphaEdit: false).objectValue?["prompt_variants"] == .int(3))
        #expect(h.json(alphaEdit: false).objectValue?["prompt_variants"] == nil, "the references' files stay as they were")
        #expect(throws: EditorError.self) { try read(["prompt_variants": .int(-1)]) }
        let every = try read(["v_stop_every_context": .bool(true)])
        #expect(every.optimization.stopOnEveryContext && !h.optimization.stopOnEveryContext)
        #expect(every.json(alphaEdit: false).objectValue?["v_stop_every_context"] == .bool(true))
        #expect(h.json(alphaEdit: false).objectValue?["v_stop_every_context"] == nil)
        #expect(throws: EditorError.self) { try read(["layers": .array([.int(30)])]) }
        #expect(throws: EditorError.self) { try read(["nullspace_threshold": .double(1)]) }  // MEMIT has no null space
        #expect(throws: EditorError.self) { try read(["v_loss_layer": .int(20)]) }
        #expect(throws: EditorError.self) { try read(["mom2_adjustment": .bool(false)]) }
        #expect(throws: EditorError.self) { try read(["layers": .array([.int(28), .int(29)])]) }
    }

    /// A reworded prompt leaves out one word: not the subject, not the last word; the same seed
    /// gives the same rewordings, and there are no more than the words that can go.
    @Test func promptVariantsLeaveOutOneWordBesideTheSubject() throws {
        let request = EditRequest(prompt: "Which city does WKMS-FM serve?", subject: "WKMS-FM", targetNew: "Murray")
        let variants = request.wordDropoutVariants(3, seed: 7)
        #expect(variants.count == 3)
        #expect(Set(variants.map(\.prompt)).count == 3)
        for v in variants {
            #expect(v.template!.contains("{}") && v.prompt.hasSuffix(" serve?") && v.subject == request.subject)
            #expect(v.prompt.split(separator: " ").count == 4)
            #expect(["city does WKMS-FM serve?", "Which does WKMS-FM serve?", "Which city WKMS-FM serve?"].contains(v.text))
        }
        #expect(request.wordDropoutVariants(3, seed: 7) == variants)
        #expect(request.wordDropoutVariants(10, seed: 7).count == 3)
        #expect(request.wordDropoutVariants(0, seed: 7).isEmpty)
        let template = EditRequest(prompt: "{} is located in", subject: "The Eiffel Tower", targetNew: "Rome")
        #expect(Set(template.wordDropoutVariants(5, seed: 1).map(\.prompt)) == ["{} located in", "{} is in"])

        // The contexts of the value optimisation and the keys: the templates, then the rewordings.
        let model = try TestModels.tinyLlama()
        var templates: [String]? = ["{}", "Some text. {}"]
        let prepared = try request.prepared(for: model)
        let contexts = try MassEditing.contexts([prepared], templates: &templates, seed: 7, variants: 2, model: model)[0]
        #expect(contexts.count == 4 && contexts[0].prompt == prepared.prompt && contexts[0].subjectLast == prepared.subjectLast)
        #expect(contexts[2...].map(\.request.text) == Array(variants.prefix(2)).map(\.text))
    }

    /// The stopping rule of `v_stop_every_context` reads the worst context's weighted NLL, not
    /// the mean over contexts.
    @Test func worstContextNLLIsTheLargestContextsLoss() {
        var layout = ValueOptimization.Layout()
        layout.contexts = 2
        layout.targets = [0, 1, 0, 1]
        layout.weights = [0.25, 0.25, 0.25, 0.25]  // the token mean over both contexts
        // Vocabulary of 2: the first context predicts its targets with p = ½, the second with
        // p = e/(1+e) each.
        let logits: [Float] = [0, 0, 0, 0, 1, 0, 0, 1]
        let worst = logits.withUnsafeBufferPointer { layout.worstContextNLL(logits: $0.baseAddress!, vocabularySize: 2) }
        #expect(abs(worst - Float(log(2.0))) < 1e-6, "\(worst)")
        layout.targets = [1, 0, 1, 0]  // now the second context misses both
        let missed = logits.withUnsafeBufferPointer { layout.worstContextNLL(logits: $0.baseAddress!, vocabularySize: 2) }
        #expect(abs(missed - Float(log(1 + M_E))) < 1e-5, "\(missed)")
    }

    /// Optimising several requests in one batch gives each the value it gets alone (one δ and
    /// one loss per request; a converged request leaves the batch).
    @Test func batchedValuesEqualSeparateOnes() throws {
        let model = try TestModels.tinyLlama()
        var h = MassEditingHyperparameters.defaults(layerCount: 2)
        h.layers = [0]
        h.optimization.steps = 6
        h.optimization.clampNormFactor = 4
        let optimization = h.valueOptimization(method: "memit")
        let requests = try [
            EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city"),
            EditRequest(prompt: "Everyone knows that {} works at", subject: "Bob Smith", targetNew: "a shop"),
        ]
        .enumerated().map { try $1.prepared(for: model, index: $0) }
        let templates = try ContextTemplates.generate(model, seed: 3)
        let contexts = try requests.map { try LocateThenEdit.inContexts($0, templates: templates, model: model) }
        let together = try optimization.run(requests, contexts: contexts, model: model)
        for i in requests.indices {
            let alone = try optimization.run([requests[i]], contexts: [contexts[i]], model: model)
            #expect(alone.stepsTaken[0] == together.stepsTaken[i])
            let scale = alone.values[0].map(abs).max()!
            #expect(zip(alone.values[0], together.values[i]).allSatisfy { abs($0 - $1) <= 1e-4 * scale })
            #expect(zip(alone.values[0], alone.initial[0]).contains { $0 != $1 }, "δ stayed zero")
        }
    }

    /// On the default model MEMIT and AlphaEdit make the new target the answer (C from a small
    /// sample of the model's own text: enough for the machinery, not for quality).
    @Test(.enabled(if: TestModels.hasDefaultModel))
    func memitAndAlphaEditEditTheDefaultModel() throws {
        let model = try TestModels.defaultModel()
        var options = StatisticsOptions(layers: [4, 5, 6, 7, 8], corpus: nil)
        options.samples = 3000
        options.maxLength = 64
        let cache = StatisticsTests.temporaryCache()
        let moments = try StatisticsCollector.collect(options, model: model, cache: cache)
        let c = Dictionary(uniqueKeysWithValues: moments.map { ($0.moment.layer, $0.moment.matrix) })
        let h = MassEditingHyperparameters.defaults(layerCount: 30)
        let request = try EditRequest(prompt: "{} is located in the city of", subject: "The Eiffel Tower", targetNew: "Rome")
            .prepared(for: model)
        for editor in [
            MEMIT(hyperparameters: h, statistics: SecondMomentSource { c[$0]! }) as any Editor,
            AlphaEdit(hyperparameters: h, statistics: SecondMomentSource { c[$0]! }),
        ] {
            let applied = try model.transformer.apply(try editor.edit([request], in: model))
            defer { applied.revert() }
            let top = try model.topNextTokens(request.prompt, k: 1)[0]
            #expect(top.id == request.target[0], "\(editor.name): top-1 \(model.tokenizer.decode([top.id], skipSpecialTokens: false))")
        }
    }
}
