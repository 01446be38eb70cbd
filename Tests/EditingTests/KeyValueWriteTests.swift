import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

/// The key-value write of the hypernetwork editors (``HypernetworkSettings/Write/keyValue``):
/// MEMIT's closed form at the subject's key, its gradient, iterated edits, and the editor file
/// that keeps C.
@Suite struct KeyValueWriteTests {
    static func settings(_ design: HypernetworkSettings.Design, model: LanguageModel, iterations: Int = 1) -> HypernetworkSettings {
        var s = HypernetworkSettings.defaults(design, write: .keyValue, config: model.config)
        s.layers = [0, 1]
        s.rank = 8
        s.latentSize = 4
        s.keyWeight = 50
        s.iterations = iterations
        return s
    }

    /// A random positive definite C `[f, f]` per layer.
    static func moments(_ model: LanguageModel, layers: [Int]) -> [Int: Tensor] {
        let f = model.config.feedForwardSize
        return Dictionary(
            uniqueKeysWithValues: layers.map { layer in
                let a = HypernetworkTests.random([f, 2 * f], seed: 30 + UInt64(layer))
                let c = Tensor(zeros: [f, f])
                MatMul.gemm(
                    transB: true, m: f, n: f, k: 2 * f, alpha: 1 / Float(2 * f), a: a.pointer, lda: 2 * f, b: a.pointer,
                    ldb: 2 * f, c: c.pointer, ldc: f)
                for i in 0..<f { c.pointer[i * f + i] += 0.1 }
                return (layer, c)
            })
    }

    /// A signal of `rows` random keys and gradients per module.
    static func signal(_ editor: HypernetworkEditor, model: LanguageModel, rows: Int, seed: UInt64) -> GradientSignal {
        var pairs: [ParameterID: TokenPairs] = [:]
        for (i, id) in editor.modules.enumerated() {
            pairs[id] = TokenPairs(
                input: HypernetworkTests.random([rows, model.config.feedForwardSize], seed: seed + UInt64(i)),
                outputGradient: HypernetworkTests.random([rows, model.config.hiddenSize], seed: seed + 50 + UInt64(i)))
        }
        return GradientSignal(pairs: pairs, loss: 1)
    }

    /// The right factor solves MEMIT's normal equations, `(λC + KKᵀ) X = K`, and the analytic
    /// gradients of every network parameter and step size match central differences.
    @Test(arguments: [HypernetworkSettings.Design.gatedMEND, .mend])
    func closedFormAndGradients(design: HypernetworkSettings.Design) throws {
        let model = try TestModels.tinyLlama()
        let settings = Self.settings(design, model: model)
        let moments = Self.moments(model, layers: settings.layers)
        let editor = try HypernetworkEditor(name: "ibke", settings: settings, model: model, keyMoments: moments)
        HypernetworkTests.perturb(editor, seed: 10)
        for i in 0..<editor.stepSizes.count { editor.stepSizes.pointer[i] = 0.5 + 0.1 * Float(i) }
        let signal = Self.signal(editor, model: model, rows: 2, seed: 1)
        let x = editor.encode(signal, updatingStatistics: true)
        let pass = try editor.run(x, signal: signal)
        let f = model.config.feedForwardSize
        for (i, id) in editor.modules.enumerated() {
            let keys = signal.pairs[id]!.input
            let solved = pass.right![i]
            let c = moments[id.layer]!
            for t in 0..<2 {
                for row in stride(from: 0, to: f, by: 17) {
                    var lhs = 0.0
                    for j in 0..<f {
                        var a = settings.keyWeight * Double(c.pointer[row * f + j])
                        for s in 0..<2 { a += Double(keys.pointer[s * f + row]) * Double(keys.pointer[s * f + j]) }
                        lhs += a * Double(solved.pointer[t * f + j])
                    }
                    #expect(abs(lhs - Double(keys.pointer[t * f + row])) < 1e-3 * max(1, abs(lhs)), "\(id) row \(row)")
                }
            }
        }
        let r = editor.modules.map { id in
            HypernetworkTests.random(model.transformer.weights.tensor(id, config: model.config)!.shape, seed: 7)
        }
        try HypernetworkTests.checkGradients(editor, x, r, signal: signal, noisy: design != .mend, step: 1e-3)
    }

    /// Iterations read the model as the earlier ones left it; the model is unchanged after the
    /// edit; the file keeps C, so a loaded editor edits identically.
    @Test func iteratedEditsAndTheFileRoundTrip() throws {
        let model = try TestModels.tinyLlama()
        let settings = Self.settings(.gatedMEND, model: model, iterations: 3)
        let editor = try HypernetworkEditor(
            name: "ibke", settings: settings, model: model,
            keyMoments: Self.moments(model, layers: settings.layers))
        let (request, delta) = try HypernetworkTests.editAlice(editor, model: model)
        for entry in delta.entries {
            guard case .lowRank(let left, let right) = entry.update else {
                Issue.record("not low rank")
                continue
            }
            #expect(left.shape[1] == 3 && right.shape[0] == 3, "one row per iteration: \(left.shape) \(right.shape)")
        }

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-kv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for half in [false, true] {
            let file = folder.appendingPathComponent("editor-\(half).safetensors")
            try editor.save(to: file, halfPrecision: half)
            let loaded = try HypernetworkEditor.load(from: file, for: model)
            #expect(loaded.settings == editor.settings)
            let again = try loaded.edit([request], in: model)
            for (a, b) in zip(delta.entries, again.entries) {
                let x = a.update.materialized().scalars
                let y = b.update.materialized().scalars
                // float16 networks and C: the same update to a few parts in a thousand.
                let norm = x.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
                let error = zip(x, y).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
                // float32: C is stored over its mean diagonal, rounded in the last bit, which the solve amplifies.
                #expect(error <= (half ? 2e-2 : 1e-4) * norm, "half \(half): \(error) of \(norm)")
            }
        }
    }

    @Test func settingsThatCannotWriteKeysAreRefused() throws {
        let model = try TestModels.tinyLlama()
        var reader = HyperparameterReader(object: ["write": .string("key_value"), "rows": .string("all_nonzero")], file: "kv.yaml")
        #expect(throws: EditorError.self) { try HypernetworkSettings(reading: &reader, design: .gatedMEND, config: model.config) }
        #expect(throws: EditorError.self) {
            try HypernetworkEditor(name: "ibke", settings: Self.settings(.gatedMEND, model: model), model: model)
        }
    }
}
