import Foundation
import ModelFormats
import Models
import TestSupport
import Testing

@testable import Evaluation

/// Pre-edit probe outcomes of the default model against PyTorch/transformers on the same
/// dequantized weights (`Scripts/golden/make_eval_reference.py`; 20 zsRE and 20 CounterFact
/// records committed). Argmax comparisons skip positions whose top-two logits are within 0.01
/// (near-ties that float rounding may flip); the script records those margins.
enum ParityModel {
    static let url = IBKEHome.model(.smolLM2)
    static var isAvailable: Bool { IBKEHome.isFetched(.smolLM2) }
    static let model: LanguageModel? = try? LanguageModel.load(url)
}

@Suite(.enabled(if: ParityModel.isAvailable))
struct ReferenceParityTests {

    func reference() throws -> JSONObject {
        let url = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("reference/pre_edit_reference.json")
        return try #require(try JSONValue.parse(Data(contentsOf: url)).objectValue)
    }

    /// Writes the fixture's input records as a dataset file and loads it.
    func dataset(_ kind: BenchmarkKind, _ records: [JSONValue]) throws -> Dataset {
        let inputs = JSONValue.array(records.map { $0.objectValue!["input"]! })
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-parity-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(inputs.serialized().utf8).write(to: url)
        return try Dataset.load(DatasetSpec(kind: kind, path: url.path))
    }

    func ints(_ value: JSONValue?) -> [Int] { value?.intArrayValue ?? [] }
    func doubles(_ value: JSONValue?) -> [Double] { value?.arrayValue?.compactMap(\.doubleValue) ?? [] }

    @Test func zsreTokensArgmaxAndAccuracyMatchPyTorch() throws {
        let model = try #require(ParityModel.model)
        let records = try #require(try reference()["zsre"]?.objectValue?["records"]?.arrayValue)
        let data = try dataset(.zsre, records)
        #expect(data.cases.count == records.count)
        let scorer = ProbeScorer(model: model, chatTemplate: nil, generationTokens: 0)
        var compared = 0
        for (c, record) in zip(data.cases, records) {
            let probes = try #require(record.objectValue?["probes"]?.objectValue)
            let outcomes = try scorer.score(c.probes)
            for outcome in outcomes {
                let ref = try #require(probes[outcome.role.rawValue]?.objectValue, "\(outcome.role) in record \(c.id)")
                #expect(outcome.targetTokens == ints(ref["target_ids"]), "record \(c.id) \(outcome.role)")
                #expect(model.encode(outcome.prompt) == ints(ref["prompt_ids"]), "record \(c.id) \(outcome.role)")
                let margins = doubles(ref["margins"])
                let argmax = ints(ref["argmax_ids"])
                for (j, margin) in margins.enumerated() where margin >= 0.01 {
                    #expect(outcome.argmax[j] == argmax[j], "record \(c.id) \(outcome.role) position \(j)")
                    compared += 1
                }
            }
            // Per-record accuracies, where no near-tie can flip them.
            let metrics = Metrics.caseMetrics(outcomes, pre: outcomes)
            for role in ["reliability", "generality", "portability", "specificity"] {
                guard let ref = probes[role]?.objectValue, doubles(ref["margins"]).allSatisfy({ $0 >= 0.01 }),
                    let expected = record.objectValue?[role]?.doubleValue
                else { continue }
                #expect(abs(metrics[role]! - expected) < 1e-6, "record \(c.id) \(role)")
            }
        }
        #expect(compared > 200)
    }

    @Test func counterFactLikelihoodsAndScoresMatchPyTorch() throws {
        let model = try #require(ParityModel.model)
        let records = try #require(try reference()["counterfact"]?.objectValue?["records"]?.arrayValue)
        let data = try dataset(.counterfact, records)
        let scorer = ProbeScorer(model: model, chatTemplate: nil, generationTokens: 0)
        let names: [Probe.Role: String] = [.rewrite: "efficacy", .paraphrase: "paraphrase", .neighborhood: "neighborhood"]
        for (c, record) in zip(data.cases, records) {
            let prompts = try #require(record.objectValue?["prompts"]?.objectValue)
            for outcome in try scorer.score(c.probes) {
                let ref = try #require(prompts[names[outcome.role]!]?.objectValue)
                let nllNew = try #require(ref["nll_new"]?.doubleValue)
                let nllTrue = try #require(ref["nll_true"]?.doubleValue)
                #expect(abs(outcome.nll - nllNew) < 2e-3, "case \(c.id) \(outcome.role): \(outcome.nll) vs \(nllNew)")
                #expect(abs(outcome.alternativeNLL! - nllTrue) < 2e-3, "case \(c.id) \(outcome.role)")
                if abs(nllNew - nllTrue) >= 0.01 {
                    #expect((outcome.nll < outcome.alternativeNLL!) == (nllNew < nllTrue), "case \(c.id) \(outcome.role)")
                }
            }
        }
    }
}
