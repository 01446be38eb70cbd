import Foundation
import TestSupport
import Testing

/// `ibke bench --value-reach` on the tiny Llama and the committed zsRE fixture.
@Suite struct BenchCommandTests {
    @Test func valueReachMeasuresTheChosenLayerAndRefusesOneTheModelLacks() throws {
        let base = [
            "bench", "--model", Fixtures.model("tiny-llama").path, "--threads", "1", "--value-reach", "2", "--value-steps", "2",
            "--dataset", TrainCommandTests.zsreTrain,
        ]
        let result = try IBKE.run(base + ["--value-layer", "0"], timeout: 120)
        #expect(result.status == 0 && result.stdout.contains("value reach at layer 0's output"), "\(result)")
        for row in ["| 0 (unedited) |", "| 1 line-searched gradient step |", "| 2 line-searched gradient steps |", "| Adam, "] {
            #expect(result.stdout.contains(row), "no \(row): \(result)")
        }
        let refused = try IBKE.run(base + ["--value-layer", "2"], timeout: 60)
        #expect(refused.status == 1 && refused.stderr.contains("--value-layer must be a layer of the model (0-1), not 2"), "\(refused)")
    }
}
