import Foundation
import TensorCore
import Testing

@testable import Models

/// The committed output of Scripts/golden/make_gradient_reference.py (PyTorch, float32).
struct GradientReference: Decodable {
    struct Delta: Decodable {
        let position: Int
        let grad: [Float]
        let grad_norm: Double
    }
    struct FeedForwardDown: Decodable {
        let dY: [[Float]]
        let X: [[Float]]
        let grad_frobenius_norm: Double
    }
    let input_ids: [Int]
    let target_ids: [Int]
    let target_positions: [Int]
    let layer: Int
    let loss_value: Double
    let delta: Delta
    let ffn_down: FeedForwardDown

    static func load(_ name: String) throws -> GradientReference {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(GradientReference.self, from: Data(contentsOf: url))
    }
}

/// Every real checkpoint in the cache (SmolLM2, Qwen2.5-Coder, Gemma 3) against PyTorch autograd.
@Suite struct GradientParityTests {
    static var checkpoints: [CachedModel] { [CachedModel.smolLM2, .qwenCoder, .gemma3].filter(\.isAvailable) }

    func cosineAndRelativeNormError(_ a: [Float], _ b: [Double]) -> (cosine: Double, relativeNormError: Double) {
        var dot = 0.0
        var na = 0.0
        var nb = 0.0
        for (x, y) in zip(a, b) {
            dot += Double(x) * y
            na += Double(x) * Double(x)
            nb += y * y
        }
        return (dot / (na.squareRoot() * nb.squareRoot()), abs(na.squareRoot() - nb.squareRoot()) / nb.squareRoot())
    }

    @Test(arguments: checkpoints)
    func deltaAndFeedForwardDownGradientsMatchPyTorch(_ checkpoint: CachedModel) throws {
        let model = try checkpoint.load().transformer
        let reference = try GradientReference.load(checkpoint.gradientReference)
        let c = model.config
        let down = ParameterID(layer: reference.layer, .feedForwardDown)
        let tape = try model.record(
            [reference.input_ids],
            interventions: [
                .add(
                    .feedForwardOutput, layer: reference.layer, delta: Tensor(zeros: [c.hiddenSize]),
                    rows: [reference.delta.position])
            ],
            logits: .positions([reference.target_positions]),
            gradients: GradientRequest(parameters: [down]))
        // Loss: the sum of the target tokens' negative log-likelihoods.
        let rows = reference.target_ids.count
        let dLogits = Tensor(zeros: [rows, c.vocabularySize])
        let weights = [Float](repeating: 1, count: rows)
        let loss = reference.target_ids.withUnsafeBufferPointer { targets in
            weights.withUnsafeBufferPointer { w in
                Losses.crossEntropy(
                    logits: tape.logits.pointer, rows: rows, vocabularySize: c.vocabularySize,
                    ldLogits: c.vocabularySize, targets: targets.baseAddress!, weights: w.baseAddress!,
                    dLogits: dLogits.pointer, ldDLogits: c.vocabularySize)
            }
        }
        #expect(abs(Double(loss) - reference.loss_value) < 1e-3)
        let gradients = tape.backward(dLogits: dLogits)

        let deltaGradient = try #require(gradients.interventions[0]).scalars
        let delta = cosineAndRelativeNormError(deltaGradient, reference.delta.grad.map(Double.init))
        #expect(delta.cosine >= 0.9999, "delta gradient cosine \(delta.cosine)")
        #expect(delta.relativeNormError <= 1e-3, "delta gradient norm error \(delta.relativeNormError)")

        // PyTorch's ∂L/∂W = Σ_t dY[t]ᵀ X[t], rebuilt from the stored factors.
        let out = c.hiddenSize
        let input = c.feedForwardSize
        var expected = [Double](repeating: 0, count: out * input)
        for (dy, x) in zip(reference.ffn_down.dY, reference.ffn_down.X) {
            for o in 0..<out where dy[o] != 0 {
                let g = Double(dy[o])
                for i in 0..<input { expected[o * input + i] += g * Double(x[i]) }
            }
        }
        let weightGradient = try #require(gradients.parameters[down]).scalars
        let weight = cosineAndRelativeNormError(weightGradient, expected)
        #expect(weight.cosine >= 0.9999, "ffn_down gradient cosine \(weight.cosine)")
        #expect(weight.relativeNormError <= 1e-3, "ffn_down gradient norm error \(weight.relativeNormError)")
        print(
            "\(checkpoint.file.rawValue): gradient parity vs PyTorch: delta cosine \(delta.cosine), norm error \(delta.relativeNormError); ffn_down cosine \(weight.cosine), norm error \(weight.relativeNormError)"
        )
    }
}
