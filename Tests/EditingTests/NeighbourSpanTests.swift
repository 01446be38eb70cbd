import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

/// Counterfactual neighbours: the update's input factors projected off the span of the edited
/// matrices' inputs on the edit's prompt with other subjects.
@Suite struct NeighbourSpanTests {
    @Test func projectionRemovesTheSpanAndKeepsTheRest() throws {
        let keys = HypernetworkTests.random([5, 12], seed: 1)
        let span = try NeighbourSpan(keys: keys)
        // A vector in the span goes to (nearly) zero; one orthogonal to it is kept.
        let inside = Tensor(zeros: [1, 12])
        for r in 0..<5 { for j in 0..<12 { inside.pointer[j] += Float(r + 1) * keys.pointer[r * 12 + j] } }
        let before = inside.scalars.map { abs($0) }.max()!
        span.project(inside.pointer, count: 1, stride: 12)
        #expect(inside.scalars.map { abs($0) }.max()! < 1e-2 * before)
        let v = HypernetworkTests.random([1, 12], seed: 2)
        span.project(v.pointer, count: 1, stride: 12)
        let w = v.copy()
        span.project(w.pointer, count: 1, stride: 12)
        // Idempotent and orthogonal to every key, up to the ridge (1e-4 of the keys' mean square).
        #expect(zip(v.scalars, w.scalars).allSatisfy { abs($0 - $1) < 1e-3 }, "a projection is idempotent")
        let vNorm = v.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for r in 0..<5 {
            let dot = (0..<12).reduce(Float(0)) { $0 + v.pointer[$1] * keys.pointer[r * 12 + $1] }
            let kNorm = (0..<12).reduce(Float(0)) { $0 + keys.pointer[r * 12 + $1] * keys.pointer[r * 12 + $1] }.squareRoot()
            #expect(abs(dot) < 1e-3 * vNorm * kNorm, "row \(r): \(dot)")
        }
    }

    /// On the tiny model: the edit with neighbours changes nothing the editor's matrices compute
    /// on the neighbour prompts, and its gradients match central differences.
    @Test func editsLeaveTheNeighboursAloneAndGradientsMatch() throws {
        let model = try TestModels.tinyLlama()
        let editor = try Self.editor(model)
        let settings = editor.settings
        for i in 0..<editor.stepSizes.count { editor.stepSizes.pointer[i] = 1e-2 }
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        // Random network inputs (the normalising statistics of one edit's few rows would blow
        // them up); the spans from the model's real inputs on four neighbour prompts.
        let x = HypernetworkTests.inputs(editor, seed: 5)
        let spans = try #require(try editor.neighbourSpans([request], model: model))
        let tokens = settings.neighbourSubjects.prefix(4).reduce(0) { $0 + model.encode("\($1) lives in").count }
        #expect(spans.allSatisfy { $0.rows == tokens }, "every position of the four neighbour prompts")
        let updates = editor.denseUpdates(try editor.run(x, neighbours: spans))
        for (i, dw) in updates.enumerated() {
            let span = spans[i]
            let n = span.width
            let out = dw.shape[0]
            var worst = 0.0
            var scale = 0.0
            for r in 0..<span.rows {
                for o in 0..<out {
                    var y = 0.0
                    for j in 0..<n { y += Double(dw.pointer[o * n + j]) * span.keys[r * n + j] }
                    worst = max(worst, abs(y))
                }
            }
            for v in dw.scalars { scale = max(scale, Double(abs(v))) }
            #expect(worst < 1e-3 * max(scale, 1e-12) * Double(n), "module \(i): ΔW k = \(worst) on a neighbour input (ΔW up to \(scale))")
        }
        let r = editor.modules.map { id in
            HypernetworkTests.random(model.transformer.weights.tensor(id, config: model.config)!.shape, seed: 9)
        }
        try HypernetworkTests.checkGradients(editor, x, r, neighbours: spans, noisy: true, step: 1e-3)
    }

    /// `neighbour_rescale` scales each module's projected input factors by
    /// `min(limit, ‖U‖/‖PU‖)`: the update grows by that factor.
    @Test func rescaleRestoresTheUpdateUpToTheLimit() throws {
        let model = try TestModels.tinyLlama()
        let editor = try Self.editor(model)
        let rescaling = try Self.editor(model, rescale: 3)
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let x = HypernetworkTests.inputs(editor, seed: 5)
        let spans = try #require(try editor.neighbourSpans([request], model: model))
        let plain = editor.denseUpdates(try editor.run(x, neighbours: spans))
        let unprojected = try editor.run(x)
        let rescaledPass = try rescaling.run(x, neighbours: spans)
        let rescaled = rescaling.denseUpdates(rescaledPass)
        let norm = { (t: Tensor) in t.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        for i in editor.modules.indices {
            let inW = plain[i].shape[1]
            // ‖U‖ and ‖PU‖ of module i's input factors.
            let u = unprojected.output(i)
            let rows = u.shape[0]
            let d = u.shape[1]
            var full = 0.0
            for t in 0..<rows { for j in 0..<inW { full += Double(u.pointer[t * d + j] * u.pointer[t * d + j]) } }
            let projected = norm(try #require(rescaledPass.right)[i]) / Double(try #require(rescaledPass.rightScales)[i])
            let expected = min(3, full.squareRoot() / projected)
            #expect(expected > 1)
            #expect(abs(norm(rescaled[i]) / norm(plain[i]) - expected) < 1e-3 * expected, "module \(i)")
        }
    }

    /// A perturbed `gated_mend` editor of the tiny model with four neighbours.
    static func editor(_ model: LanguageModel, rescale: Double = 1) throws -> HypernetworkEditor {
        var settings = HypernetworkTests.settings(.gatedMEND, model: model)
        settings.neighbours = 4
        settings.neighbourRescale = rescale
        let editor = try HypernetworkEditor(name: "ibke", settings: settings, model: model)
        HypernetworkTests.perturb(editor, seed: 20)
        return editor
    }
}
