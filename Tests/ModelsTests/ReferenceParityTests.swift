import Foundation
import TensorCore
import Testing

@testable import Models

@Suite(.enabled(if: DefaultModel.isAvailable, "default model not fetched (ibke model fetch)"))
struct ReferenceParityTests {
    @Test func topFiveLogitsMatchPyTorchAtEveryPosition() throws {
        let model = try #require(DefaultModel.transformer)
        let reference = try ReferenceLogits.load()
        let logits = try model.forward(reference.prompts.map(\.token_ids), logits: .all)
        var row = 0
        var worst: Float = 0
        for prompt in reference.prompts {
            for position in prompt.positions {
                let values = logits.pointer + row * model.config.vocabularySize
                for (id, expected) in zip(position.top5_ids, position.top5_logits) {
                    worst = max(worst, abs(values[id] - expected))
                }
                let lse = Kernels.logSumExp(values, count: model.config.vocabularySize)
                worst = max(worst, abs(lse - position.logsumexp))
                row += 1
            }
        }
        #expect(worst < 1e-3, "largest logit difference \(worst)")
        print("largest logit difference vs PyTorch:", worst)
    }
}
