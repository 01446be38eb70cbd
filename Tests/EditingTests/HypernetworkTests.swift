import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

/// The MEND/IBKE editor network: gradients against finite differences, the initial update,
/// files, and edits on the tiny Llama.
@Suite struct HypernetworkTests {
    static func settings(_ design: HypernetworkSettings.Design, model: LanguageModel) -> HypernetworkSettings {
        var s = HypernetworkSettings.defaults(design, config: model.config)
        s.layers = [0, 1]
        s.rank = 8
        s.latentSize = 4
        return s
    }

    static func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var rng = SplitMix64(seed: seed)
        return Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in scale * rng.nextGaussian() })
    }

    /// Random rows `[3, in + out]` for every module of `editor`.
    static func inputs(_ editor: HypernetworkEditor, seed: UInt64) -> [Tensor] {
        editor.modules.indices.map { i in
            let s = editor.shapes[editor.placement[i].shape]
            return random([3, s.inWidth + s.outWidth], seed: seed + UInt64(i))
        }
    }

    /// L = Σ_m ⟨ΔW_m, R_m⟩ + c·KL, with the latent noise fixed by its seed.
    static func loss(
        _ editor: HypernetworkEditor, _ x: [Tensor], _ r: [Tensor], klScale: Float, noisy: Bool,
        signal: GradientSignal? = nil, neighbours: [NeighbourSpan]? = nil
    ) throws -> Double {
        var rng = SplitMix64(seed: 99)
        let pass =
            noisy
            ? try withUnsafeMutablePointer(to: &rng) { try editor.run(x, signal: signal, neighbours: neighbours, noise: $0) }
            : try editor.run(x, signal: signal, neighbours: neighbours)
        var total = Double(klScale) * pass.klSum
        for (dw, ri) in zip(editor.denseUpdates(pass), r) {
            for j in 0..<dw.count { total += Double(dw.pointer[j]) * Double(ri.pointer[j]) }
        }
        return total
    }

    /// IBKE.md §8 check 1: for every parameter tensor, the analytic gradient against central
    /// differences along that tensor's gradient direction (where round-off in float32 is
    /// smallest relative to the change), and every step size η_m on its own.
    @Test(arguments: HypernetworkSettings.Design.allCases)
    func backwardMatchesFiniteDifferences(design: HypernetworkSettings.Design) throws {
        let model = try TestModels.tinyLlama()
        let editor = try HypernetworkEditor(name: "test", settings: Self.settings(design, model: model), model: model)
        Self.perturb(editor, seed: 10)
        for i in 0..<editor.stepSizes.count { editor.stepSizes.pointer[i] = 0.5 + 0.1 * Float(i) }
        let x = Self.inputs(editor, seed: 1)
        let r = editor.modules.map { id in Self.random(model.transformer.weights.tensor(id, config: model.config)!.shape, seed: 7) }
        try Self.checkGradients(editor, x, r, noisy: design != .mend)
    }

    /// The edit "Alice lives in → the big city" with step sizes 1e-2 and the normalising
    /// statistics of its own rows (as training would leave them), checking that editing left the
    /// model's weights as they were.
    static func editAlice(_ editor: HypernetworkEditor, model: LanguageModel) throws -> (PreparedRequest, WeightDelta) {
        for i in 0..<editor.stepSizes.count { editor.stepSizes.pointer[i] = 1e-2 }
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        _ = editor.encode(
            try GradientSignal.capture(
                [request], transformer: model.transformer, modules: editor.modules,
                rows: editor.settings.rows), updatingStatistics: true)
        let before = editor.modules.map { model.transformer.weights.tensor($0, config: model.config)!.scalars }
        let delta = try editor.edit([request], in: model)
        #expect(editor.modules.map { model.transformer.weights.tensor($0, config: model.config)!.scalars } == before)
        return (request, delta)
    }

    /// Moves every parameter off its initial value (zero δ̃ rows, zero up-projections), so that
    /// every path carries gradient, keeping log-variances inside the clamp, and puts ReLU inputs
    /// away from the kink (half the units on, half off), so the function is smooth.
    static func perturb(_ editor: HypernetworkEditor, seed: UInt64) {
        for (k, bank) in editor.parameterBanks.enumerated() {
            let noise = random([bank.count], seed: seed + UInt64(k), scale: 0.1)
            Kernels.add(noise.pointer, into: bank.values.pointer, count: bank.count)
            for name in ["layer0.shift", "encoder.shift", "decoder.shift"] where bank.slots.contains(where: { $0.name == name }) {
                let shift = bank[name]
                for j in 0..<shift.count { shift.pointer[j] = j % 2 == 0 ? 3 : -3 }
            }
        }
    }

    /// The analytic gradient of ``loss(_:_:_:klScale:noisy:signal:neighbours:)`` against central differences.
    static func checkGradients(
        _ editor: HypernetworkEditor, _ x: [Tensor], _ r: [Tensor], signal: GradientSignal? = nil,
        neighbours: [NeighbourSpan]? = nil, noisy: Bool, step h: Float = 1e-2
    ) throws {
        let klScale: Float = 0.3
        var rng = SplitMix64(seed: 99)
        let pass =
            noisy
            ? try withUnsafeMutablePointer(to: &rng) { try editor.run(x, signal: signal, neighbours: neighbours, noise: $0) }
            : try editor.run(x, signal: signal, neighbours: neighbours)
        let gradients = editor.parameterBanks.map { $0.makeGradient() }
        let stepGradient = Tensor(zeros: editor.stepSizes.shape)
        editor.backward(pass, updateGradients: r, klScale: klScale, into: gradients, stepSizeGradient: stepGradient)

        /// (L(θ + h·v) − L(θ − h·v)) / 2h for the unit direction `v` over `count` floats at `p`.
        func directional(_ p: UnsafeMutablePointer<Float>, _ v: [Float]) throws -> Double {
            let saved = Array(UnsafeBufferPointer(start: p, count: v.count))
            for j in v.indices { p[j] = saved[j] + h * v[j] }
            let up = try loss(editor, x, r, klScale: klScale, noisy: noisy, signal: signal, neighbours: neighbours)
            for j in v.indices { p[j] = saved[j] - h * v[j] }
            let down = try loss(editor, x, r, klScale: klScale, noisy: noisy, signal: signal, neighbours: neighbours)
            for j in v.indices { p[j] = saved[j] }
            return (up - down) / Double(2 * h)
        }
        for (k, bank) in editor.parameterBanks.enumerated() {
            for slot in bank.slots {
                let g = bank.view(slot.name, in: gradients[k]).scalars
                let norm = Double(g.map { $0 * $0 }.reduce(0, +)).squareRoot()
                #expect(norm > 0, "shape \(k) \(slot.name): no gradient")
                guard norm > 0 else { continue }
                let numeric = try directional(bank[slot.name].pointer, g.map { Float(Double($0) / norm) })
                #expect(abs(numeric - norm) <= 2e-2 * norm, "shape \(k) \(slot.name): numeric \(numeric), analytic \(norm)")
            }
        }
        for i in 0..<editor.stepSizes.count {
            let numeric = try directional(editor.stepSizes.pointer + i, [1])
            let analytic = Double(stepGradient.pointer[i])
            #expect(abs(numeric - analytic) <= 2e-2 * max(1, abs(numeric)), "η[\(i)]: numeric \(numeric), analytic \(analytic)")
        }
    }

    /// IBKE.md §8 check 2: the bottleneck starts with ΔW = 0 exactly, and a gradient reaches
    /// the δ̃ half of the decoder (no saddle).
    @Test func bottleneckStartsAtZeroWithoutASaddle() throws {
        let model = try TestModels.tinyLlama()
        let editor = try HypernetworkEditor(name: "ibke", settings: Self.settings(.bottleneck, model: model), model: model)
        let pass = try editor.run(Self.inputs(editor, seed: 3))
        #expect(editor.denseUpdates(pass).allSatisfy { $0.scalars.allSatisfy { $0 == 0 } })
        let r = editor.modules.map { id in Self.random(model.transformer.weights.tensor(id, config: model.config)!.shape, seed: 8) }
        let gradients = editor.parameterBanks.map { $0.makeGradient() }
        editor.backward(pass, updateGradients: r, klScale: 0, into: gradients, stepSizeGradient: Tensor(zeros: [editor.modules.count]))
        for (k, bank) in editor.parameterBanks.enumerated() {
            let s = editor.shapes[k]
            let deltaRows = bank.view("output.weight", in: gradients[k]).scalars.dropFirst(s.inWidth * editor.settings.rank)
            #expect(deltaRows.contains { $0 != 0 }, "shape \(k): no gradient reaches the δ̃ rows")
        }
    }

    /// MEND starts as the identity: ΔW = −η Σ_t δ̄_t ū_tᵀ, a normalised gradient step.
    @Test func mendStartsAsANormalisedGradientStep() throws {
        let model = try TestModels.tinyLlama()
        let editor = try HypernetworkEditor(name: "mend", settings: Self.settings(.mend, model: model), model: model)
        let x = Self.inputs(editor, seed: 4)
        let updates = editor.denseUpdates(try editor.run(x))
        for (i, dw) in updates.enumerated() {
            let s = editor.shapes[editor.placement[i].shape]
            let d = s.inWidth + s.outWidth
            var worst: Float = 0
            for o in 0..<s.outWidth {
                for j in 0..<s.inWidth {
                    var expected: Float = 0
                    for t in 0..<3 { expected += x[i].pointer[t * d + s.inWidth + o] * x[i].pointer[t * d + j] }
                    worst = max(worst, abs(dw.pointer[o * s.inWidth + j] + 1e-4 * expected))
                }
            }
            #expect(worst < 1e-7, "module \(i): \(worst)")
        }
    }

    @Test func normalizerMatchesTwoPassStatistics() {
        let rows = Self.random([50, 3], seed: 2, scale: 4)
        var normalizer = FeatureNormalizer(width: 3)
        normalizer.update(rows.pointer, rows: 20, ld: 3)
        normalizer.update(rows.pointer + 60, rows: 30, ld: 3)
        for j in 0..<3 {
            let column = (0..<50).map { Double(rows.pointer[$0 * 3 + j]) }
            let mean = column.reduce(0, +) / 50
            let std = (column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 49).squareRoot()
            #expect(abs(normalizer.mean[j] - mean) < 1e-9)
            #expect(abs(normalizer.standardDeviation[j] - std) < 1e-9)
        }
    }

    /// An edit with a (randomised) editor: the model is unchanged by editing, changed by
    /// applying, restored bitwise by reverting; the file round trip gives the same delta; a
    /// different model is refused.
    @Test(arguments: HypernetworkSettings.Design.allCases)
    func editSaveLoadRevertAndRefuseAnotherModel(design: HypernetworkSettings.Design) throws {
        let model = try TestModels.tinyLlama()
        let editor = try HypernetworkEditor(
            name: design == .mend ? "mend" : "ibke", settings: Self.settings(design, model: model),
            model: model)
        for (k, bank) in editor.parameterBanks.enumerated() {
            let noise = Self.random([bank.count], seed: 20 + UInt64(k), scale: 0.1)
            Kernels.add(noise.pointer, into: bank.values.pointer, count: bank.count)
        }
        let (request, delta) = try Self.editAlice(editor, model: model)
        let before = editor.modules.map { model.transformer.weights.tensor($0, config: model.config)!.scalars }
        #expect(delta.parameters == editor.modules)
        #expect(delta.metadata[WeightDelta.modelHashKey] == (try model.contentHash()))
        let applied = try model.transformer.apply(delta)
        #expect(model.transformer.weights.tensor(editor.modules[0], config: model.config)!.scalars != before[0])
        applied.revert()
        #expect(editor.modules.map { model.transformer.weights.tensor($0, config: model.config)!.scalars } == before)

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-editor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("editor.safetensors")
        try editor.save(to: file)
        let loaded = try HypernetworkEditor.load(from: file, for: model)
        #expect(loaded.settings == editor.settings && loaded.name == editor.name)
        let again = try loaded.edit([request], in: model)
        for (a, b) in zip(delta.entries, again.entries) {
            #expect(a.update.materialized().scalars == b.update.materialized().scalars)
        }
        let other = try LanguageModel.load(TestModels.fixtures.appendingPathComponent("tiny-llama.gguf"))
        #expect(throws: HypernetworkError.self) { try HypernetworkEditor.load(from: file, for: other) }
        do {
            _ = try HypernetworkEditor.load(from: file, for: other)
        } catch let error as HypernetworkError {
            #expect(error.description.contains("editor.safetensors") && error.description.contains("ibke train"))
        }
        // A file that is not an editor.
        try delta.save(to: folder.appendingPathComponent("delta.safetensors"))
        #expect(throws: HypernetworkError.self) {
            try HypernetworkEditor.load(from: folder.appendingPathComponent("delta.safetensors"), for: model)
        }
    }
}
