import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

@Suite struct ValueReachTests {
    /// The gradient of the target NLL with respect to δ at the subject's value matches central
    /// finite differences, and δ = 0 gives the unedited model's NLL (the prefix reuse changes nothing).
    @Test func lossGradientMatchesFiniteDifferences() throws {
        let model = try TestModels.tinyLlama()
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let width = model.config.hiddenSize
        var rng = SplitMix64(seed: 3)
        let delta = (0..<width).map { _ in Float(rng.nextUnit() - 0.5) }
        let reader = try ValueReach.Reader(request, model: model, layer: 1)
        let (value, gradient) = try reader.loss(delta, gradient: true)
        #expect(value.isFinite && gradient.count == width)
        for j in [0, width / 3, width - 1] {
            let h: Float = 1e-2
            var plus = delta
            var minus = delta
            plus[j] += h
            minus[j] -= h
            let numeric =
                (try reader.loss(plus).value - reader.loss(minus).value) / (2 * h)
            #expect(abs(numeric - gradient[j]) <= 2e-3 + 2e-2 * abs(gradient[j]), "coordinate \(j): \(numeric) vs \(gradient[j])")
        }
        let unedited = try reader.loss([Float](repeating: 0, count: width)).value
        let sequence = request.prompt + request.target.dropLast()
        let logits = try model.transformer.forward([sequence], logits: .all)
        let v = model.config.vocabularySize
        let first = request.prompt.count - 1
        let direct = request.target.withUnsafeBufferPointer { targets in
            Losses.crossEntropy(
                logits: logits.pointer + first * v, rows: request.target.count, vocabularySize: v, ldLogits: v,
                targets: targets.baseAddress!, dLogits: nil, ldDLogits: v)
        }
        #expect(abs(unedited - direct) < 1e-4)
    }

    /// Each step picks one of the offered lengths and never ends above the unedited NLL on
    /// the tiny model; the reference optimisation lowers it; the cosine is a cosine.
    @Test func measureReportsEveryStep() throws {
        let model = try TestModels.tinyLlama()
        let request = try EditRequest(prompt: "{} lives in", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let paraphrase = try EditRequest(prompt: "Where does {} live? In", subject: "Alice", targetNew: "the big city").prepared(for: model)
        let scales: [Float] = [0.25, 0.5, 1]
        let settings = ValueOptimizationSettings(steps: 10, learningRate: 0.5, clampNormFactor: 4)
        let result = try ValueReach.measure(
            request, paraphrase: paraphrase, model: model, layer: 0, settings: settings, steps: 3, scales: scales)
        #expect(result.promptLoss.count == 4 && result.paraphraseLoss.count == 4 && result.chosenScales.count == 3)
        #expect(result.chosenScales.allSatisfy { s in scales.contains { abs($0 - s) < 1e-5 } })
        #expect(result.promptLoss[3] < result.promptLoss[0])
        #expect(result.referencePromptLoss < result.promptLoss[0])
        #expect((-1...1).contains(result.initialGradientCosine) && result.searchedNorm > 0 && result.referenceNorm > 0)
    }
}
