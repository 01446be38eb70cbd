import Foundation
import Testing

@testable import Evaluation

@Suite struct MetricsTests {
    func outcome(
        _ role: Probe.Role, target: [Int] = [1, 2], argmax: [Int] = [1, 2], ranks: [Int] = [0, 0],
        nll: Double = 1, alternative: Double? = nil
    ) -> ProbeOutcome {
        ProbeOutcome(
            role: role, prompt: "p", target: "t", targetTokens: target, argmax: argmax, ranks: ranks,
            nll: nll, alternativeNLL: alternative, generated: nil, aliases: nil)
    }

    @Test func tokenAccuracyGivesPartialCreditAndExactMatch() {
        let post = [outcome(.reliability, argmax: [1, 9], ranks: [0, 3]), outcome(.generality)]
        let m = Metrics.caseMetrics(post, pre: post)
        #expect(m["reliability"] == 0.5 && m["reliability_em"] == 0)
        #expect(m["generality"] == 1 && m["generality_em"] == 1)
        // Top-5: rank 3 counts.
        #expect(Metrics.caseMetrics(post, pre: post, topK: 5)["reliability"] == 1)
    }

    @Test func localityComparesWithThePreEditArgmaxNotTheAnswer() {
        let pre = [outcome(.locality, target: [5, 6, 7], argmax: [5, 8, 7], ranks: [0, 2, 0])]
        let post = [outcome(.locality, target: [5, 6, 7], argmax: [5, 8, 9], ranks: [0, 2, 4])]
        let m = Metrics.caseMetrics(post, pre: pre)
        #expect(abs(m["locality"]! - 2.0 / 3) < 1e-12)
        #expect(m["locality_em"] == 0)
        #expect(Metrics.caseMetrics(pre, pre: pre)["locality"] == 1)
    }

    @Test func counterFactComparisonsAndScore() {
        // Rewrite: NLL(new) 1 < NLL(true) 2 → success; magnitude e^-1 − e^-2.
        // Neighbourhood: success when NLL(true) < NLL(new).
        let a = Metrics.caseMetrics(
            [
                outcome(.rewrite, nll: 1, alternative: 2), outcome(.paraphrase, nll: 3, alternative: 2),
                outcome(.neighborhood, nll: 3, alternative: 2),
            ], pre: [outcome(.rewrite), outcome(.rewrite), outcome(.rewrite)])
        #expect(a["efficacy_score"] == 1 && a["paraphrase_score"] == 0 && a["neighborhood_score"] == 1)
        #expect(abs(a["efficacy_magnitude"]! - (exp(-1.0) - exp(-2.0))) < 1e-12)
        #expect(abs(a["neighborhood_magnitude"]! - (exp(-2.0) - exp(-3.0))) < 1e-12)
        let b: [String: Double] = ["efficacy_score": 1, "paraphrase_score": 1, "neighborhood_score": 0]
        let agg = Metrics.aggregate([a, b])
        #expect(agg["efficacy_score"] == 1 && agg["paraphrase_score"] == 0.5 && agg["neighborhood_score"] == 0.5)
        #expect(abs(agg["score"]! - 3 / (1 + 2 + 2.0)) < 1e-12)
    }

    @Test func multiHopSucceedsWhenAnyQuestionDoes() {
        let probes = [
            outcome(.multiHop, nll: 3, alternative: 2), outcome(.multiHop, nll: 1, alternative: 2),
            outcome(.editedFact, nll: 1, alternative: 2),
        ]
        let m = Metrics.caseMetrics(probes, pre: probes)
        #expect(m["multi_hop_score"] == 1 && m["edited_fact_score"] == 1)
        let none = Metrics.caseMetrics([outcome(.multiHop, nll: 3, alternative: 2)], pre: [outcome(.multiHop)])
        #expect(none["multi_hop_score"] == 0)
    }

    @Test func aggregateSkipsCasesWithoutAMetric() {
        let agg = Metrics.aggregate([["portability": 1, "reliability": 0], ["reliability": 1]])
        #expect(agg["portability"] == 1 && agg["reliability"] == 0.5 && agg["score"] == nil)
    }

    @Test func infoListsOnlyPresentMetricsInOrder() {
        let s = EvaluationSettings(
            metricFamily: "zsre-token-accuracy", protocolKind: "single", batchSize: 1, evaluateEvery: 0,
            topK: 1, chatTemplate: false, generation: false, zsreTarget: .alt, seed: 42)
        let info = Metrics.info(for: ["locality", "reliability"], settings: s)
        #expect(info.map(\.name) == ["reliability", "locality"])
        #expect(info[0].definition.contains("alt") && info[0].definition.contains("argmax"))
    }
}
