import Foundation

/// The editing metrics (METHODS.md §8): per case from probe outcomes, then averaged over cases.
///
/// Values are fractions in [0, 1] (magnitudes in [−1, 1], fluency in bits); tables show ×100.
public enum Metrics {
    /// Per-case metrics of post-edit outcomes, given the pre-edit outcomes of the same probes
    /// (locality compares the two argmax sequences).
    ///
    /// - Parameter topK: a target token counts as correct when its rank is below `topK`.
    public static func caseMetrics(_ outcomes: [ProbeOutcome], pre: [ProbeOutcome], topK: Int = 1) -> [String: Double] {
        precondition(outcomes.count == pre.count, "post and pre outcomes of different probe lists")
        var sums: [String: (total: Double, count: Int)] = [:]
        func add(_ name: String, _ value: Double) {
            let s = sums[name] ?? (0, 0)
            sums[name] = (s.total + value, s.count + 1)
        }
        var multiHopAny: Bool?
        var multiHopGeneratedAny: Bool?
        for (o, p) in zip(outcomes, pre) {
            let correct = o.ranks.map { $0 < topK }
            let accuracy = Double(correct.filter { $0 }.count) / Double(max(1, correct.count))
            let exact: Double = correct.allSatisfy { $0 } ? 1 : 0
            switch o.role {
            case .reliability, .generality, .portability, .specificity:
                add(o.role.rawValue, accuracy)
                add(o.role.rawValue + "_em", exact)
            case .locality:
                let agree = zip(o.argmax, p.argmax).map { $0 == $1 }
                add("locality", Double(agree.filter { $0 }.count) / Double(max(1, agree.count)))
                add("locality_em", agree.allSatisfy { $0 } ? 1 : 0)
            case .rewrite, .paraphrase, .neighborhood:
                guard let alternative = o.alternativeNLL else { continue }
                let prefix = o.role == .rewrite ? "efficacy" : o.role == .paraphrase ? "paraphrase" : "neighborhood"
                let pNew = exp(-o.nll)
                let pTrue = exp(-alternative)
                if o.role == .neighborhood {
                    add(prefix + "_score", alternative < o.nll ? 1 : 0)
                    add(prefix + "_magnitude", pTrue - pNew)
                } else {
                    add(prefix + "_score", o.nll < alternative ? 1 : 0)
                    add(prefix + "_magnitude", pNew - pTrue)
                }
            case .multiHop:
                if let alternative = o.alternativeNLL { multiHopAny = (multiHopAny ?? false) || o.nll < alternative }
            case .editedFact:
                if let alternative = o.alternativeNLL { add("edited_fact_score", o.nll < alternative ? 1 : 0) }
                add("edited_fact_accuracy", accuracy)
            }
            if let generated = o.generated {
                switch o.role {
                case .reliability, .generality, .portability:
                    add(o.role.rawValue + "_gen", TextMetrics.generatedAnswerMatches(generated: generated, answers: [o.target]) ? 1 : 0)
                case .multiHop:
                    let aliases = [o.target] + (o.aliases ?? [])
                    multiHopGeneratedAny =
                        (multiHopGeneratedAny ?? false)
                        || TextMetrics.generatedAnswerMatches(generated: generated, answers: aliases)
                case .rewrite, .paraphrase:
                    add("fluency", TextMetrics.generationEntropy(generated))
                default: break
                }
            }
        }
        var metrics = sums.mapValues { $0.total / Double($0.count) }
        if let multiHopAny { metrics["multi_hop_score"] = multiHopAny ? 1 : 0 }
        if let multiHopGeneratedAny { metrics["multi_hop_gen"] = multiHopGeneratedAny ? 1 : 0 }
        return metrics
    }

    /// Means over cases of each metric (cases without a metric do not count for it), plus
    /// CounterFact's Score: the harmonic mean of ES, PS and NS.
    public static func aggregate(_ cases: [[String: Double]]) -> [String: Double] {
        var sums: [String: (Double, Int)] = [:]
        for metrics in cases {
            for (name, value) in metrics {
                let s = sums[name] ?? (0, 0)
                sums[name] = (s.0 + value, s.1 + 1)
            }
        }
        var result = sums.mapValues { $0.0 / Double($0.1) }
        if let es = result["efficacy_score"], let ps = result["paraphrase_score"], let ns = result["neighborhood_score"] {
            result["score"] = es > 0 && ps > 0 && ns > 0 ? 3 / (1 / es + 1 / ps + 1 / ns) : 0
        }
        return result
    }

    /// Labels and one-line definitions, in display order, of the metrics that occur in `names`.
    public static func info(for names: Set<String>, settings: EvaluationSettings) -> [MetricInfo] {
        let k = settings.topK == 1 ? "argmax" : "in the top \(settings.topK)"
        let tf = "teacher-forced, target token \(k), partial credit"
        let target = settings.zsreTarget.field
        let chat = settings.chatTemplate ? "; prompts in the chat template" : ""
        let catalogue: [(String, String, String)] = [
            ("reliability", "Rel.", "token accuracy of the new target \(target) after the edit prompt (\(tf))"),
            ("generality", "Gen.", "token accuracy of the new target after the paraphrase (\(tf))"),
            ("locality", "Loc.", "agreement of post-edit and pre-edit argmax at each answer position of the unrelated prompt (EasyEdit)"),
            ("portability", "Port.", "token accuracy of the one-hop answer (\(tf))"),
            ("specificity", "Spec.", "ROME/MEMIT zsRE specificity: token accuracy of the ground-truth answer after loc + \"?\" (\(tf))"),
            ("reliability_em", "Rel. EM", "all target tokens correct (MEND's accuracy)"),
            ("generality_em", "Gen. EM", "all target tokens correct on the paraphrase"),
            ("locality_em", "Loc. EM", "all answer positions keep the pre-edit argmax"),
            ("portability_em", "Port. EM", "all one-hop answer tokens correct"),
            ("specificity_em", "Spec. EM", "all ground-truth tokens correct after loc + \"?\""),
            ("reliability_gen", "Rel. gen", "greedy generation after the edit prompt starts with the normalised target"),
            ("generality_gen", "Gen. gen", "greedy generation after the paraphrase starts with the normalised target"),
            ("portability_gen", "Port. gen", "greedy generation starts with the normalised one-hop answer"),
            ("efficacy_score", "ES", "P(new) > P(true) on the rewrite prompt (mean token NLL, teacher-forced)"),
            ("paraphrase_score", "PS", "P(new) > P(true) on paraphrase prompts (mean within case)"),
            ("neighborhood_score", "NS", "P(true) > P(new) on neighbourhood prompts (mean within case)"),
            ("score", "Score", "harmonic mean of ES, PS, NS"),
            ("efficacy_magnitude", "EM", "P(new) − P(true) on the rewrite prompt, P = exp(−mean token NLL)"),
            ("paraphrase_magnitude", "PM", "P(new) − P(true) on paraphrase prompts"),
            ("neighborhood_magnitude", "NM", "P(true) − P(new) on neighbourhood prompts"),
            ("fluency", "GE", "generation entropy (2/3·H₂ + 4/3·H₃)/2 of greedy generations after the rewrite and paraphrase prompts"),
            ("edited_fact_score", "Fact", "MQuAKE edit-wise: P(new) > P(true) on each edited fact's cloze"),
            ("edited_fact_accuracy", "Fact acc.", "MQuAKE edit-wise token accuracy of the new object (\(tf))"),
            (
                "multi_hop_score", "MH (tf)",
                "MQuAKE multi-hop, teacher-forced variant: any of the questions has NLL(new answer) < NLL(old answer)"
            ),
            (
                "known_retention", "Known",
                "known-fact retention: of the facts the unedited model completes correctly (greedy), the share whose greedy answer tokens the edit left unchanged (facts about an edited subject left out)"
            ),
            ("multi_hop_gen", "MH", "MQuAKE multi-hop accuracy: any question's greedy answer matches the new answer or an alias"),
        ]
        return catalogue.filter { names.contains($0.0) }.map { MetricInfo(name: $0.0, label: $0.1, definition: $0.2 + chat) }
    }
}
