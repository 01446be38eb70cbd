import Editing

/// CounterFact in either layout, told apart by the first record: ROME's `counterfact.json` /
/// MEMIT's `multi_counterfact.json` (a `requested_rewrite` object and prompt lists) or EasyEdit's
/// flat repackaging (one rephrase and one locality prompt per case).
enum CounterFactLoader {
    static func load(_ file: DatasetFile, limit: Int?) throws(DatasetError) -> Dataset {
        let records = try file.records()
        let rome = records.first?.objectValue?["requested_rewrite"] != nil
        var cases: [EvalCase] = []
        var ids = CaseIDs()
        for (index, value) in records.prefix(limit ?? .max).enumerated() {
            var record = try RecordReader(value, file: file.path, location: .init(index: index))
            let id = try record.id("case_id")
            record.location.caseID = id
            try ids.insert(id, field: "case_id", of: record)
            cases.append(rome ? try romeCase(record, id: id) : try easyEditCase(record, id: id))
        }
        return Dataset(
            kind: .counterfact, format: rome ? "counterfact-rome" : "counterfact-easyedit",
            path: file.path, sha256: file.sha256, cases: cases)
    }

    /// ROME layout: `requested_rewrite {prompt (template with {}), subject, target_new {str},
    /// target_true {str}}`, `paraphrase_prompts`, `neighborhood_prompts`, optional
    /// `generation_prompts` (fluency) and `attribute_prompts` (not scored here).
    static func romeCase(_ record: RecordReader, id: String) throws(DatasetError) -> EvalCase {
        let request = try rewriteRequest(record.object("requested_rewrite"))
        let paraphrases = try record.strings("paraphrase_prompts")
        let neighbours = try record.strings("neighborhood_prompts")
        _ = try record.optionalStrings("attribute_prompts")
        let generationPrompts = try record.optionalStrings("generation_prompts")
        let new = request.targetNew
        let old = request.targetTrue
        let probes =
            [Probe(role: .rewrite, prompt: request.text, target: new, alternative: old)]
            + paraphrases.map { Probe(role: .paraphrase, prompt: $0, target: new, alternative: old) }
            + neighbours.map { Probe(role: .neighborhood, prompt: $0, target: new, alternative: old) }
        return EvalCase(
            id: id, kind: .counterfact, requests: [request], probes: probes,
            generationPrompts: generationPrompts)
    }

    /// A ROME-style `requested_rewrite` object (also MQuAKE's list elements): `prompt` must be a
    /// template, as ROME fills it with `str.format`.
    static func rewriteRequest(_ rewrite: RecordReader) throws(DatasetError) -> EditRequest {
        let template = try rewrite.string("prompt")
        guard template.contains("{}") else {
            throw rewrite.error("prompt", "expected a template with {} where the subject goes, found \"\(template)\"")
        }
        return EditRequest(
            prompt: template, subject: try rewrite.string("subject"),
            targetNew: try rewrite.object("target_new").string("str"),
            targetTrue: try rewrite.object("target_true").string("str"))
    }

    /// EasyEdit layout: `prompt` (finished text), `subject`, `target_new`, `ground_truth`,
    /// `rephrase_prompt`, `locality_prompt`, `locality_ground_truth`.
    static func easyEditCase(_ record: RecordReader, id: String) throws(DatasetError) -> EvalCase {
        let request = EditRequest(
            prompt: try record.string("prompt"), subject: try record.string("subject"),
            targetNew: try record.string("target_new"),
            targetTrue: try record.string("ground_truth"))
        let new = request.targetNew
        let probes = [
            Probe(role: .rewrite, prompt: request.text, target: new, alternative: request.targetTrue),
            Probe(
                role: .paraphrase, prompt: try record.string("rephrase_prompt"), target: new,
                alternative: request.targetTrue),
            // The neighbour's own true object (equal to ground_truth in every shared record).
            Probe(
                role: .neighborhood, prompt: try record.string("locality_prompt"), target: new,
                alternative: try record.string("locality_ground_truth")),
        ]
        return EvalCase(id: id, kind: .counterfact, requests: [request], probes: probes)
    }
}
