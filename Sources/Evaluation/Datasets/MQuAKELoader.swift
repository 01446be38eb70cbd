import Editing

/// MQuAKE (`princeton-nlp/MQuAKE` schema): each case's edits are applied together, then its
/// multi-hop questions are asked.
enum MQuAKELoader {
    static func load(_ file: DatasetFile, limit: Int?) throws(DatasetError) -> Dataset {
        var cases: [EvalCase] = []
        var ids = CaseIDs()
        for (index, value) in try file.records().prefix(limit ?? .max).enumerated() {
            var record = try RecordReader(value, file: file.path, location: .init(index: index))
            let id = try record.id("case_id")
            record.location.caseID = id
            try ids.insert(id, field: "case_id", of: record)
            cases.append(try makeCase(record, id: id))
        }
        return Dataset(kind: .mquake, format: "mquake", path: file.path, sha256: file.sha256, cases: cases)
    }

    static func makeCase(_ record: RecordReader, id: String) throws(DatasetError) -> EvalCase {
        // Each new single-hop answer and its aliases, by question: generation-based edit-wise
        // matching accepts the aliases too.
        var newHops: [String: (answer: String, aliases: [String])] = [:]
        if record.has("new_single_hops") {
            for hop in try record.objects("new_single_hops") {
                newHops[try hop.string("question")] = (try hop.string("answer"), try aliases(hop, "answer_alias"))
            }
        }
        var requests: [EditRequest] = []
        var probes: [Probe] = []
        let rewrites = try record.objects("requested_rewrite")
        guard !rewrites.isEmpty else {
            throw record.error("requested_rewrite", "is empty; expected at least one edit")
        }
        for rewrite in rewrites {
            let request = try CounterFactLoader.rewriteRequest(rewrite)
            requests.append(request)
            let hop = try rewrite.optionalString("question").flatMap { newHops[$0] }
            probes.append(
                Probe(
                    role: .editedFact, prompt: request.text, target: request.targetNew,
                    alternative: request.targetTrue,
                    aliases: hop?.answer == request.targetNew ? hop?.aliases ?? [] : []))
        }
        let questions = try record.strings("questions")
        guard !questions.isEmpty else {
            throw record.error("questions", "is empty; expected at least one question")
        }
        let newAnswer = try record.string("new_answer")
        let oldAnswer = try record.string("answer")
        let newAnswerAliases = try aliases(record, "new_answer_alias")
        _ = try aliases(record, "answer_alias")
        probes =
            questions.map {
                Probe(role: .multiHop, prompt: $0, target: newAnswer, alternative: oldAnswer, aliases: newAnswerAliases)
            } + probes
        return EvalCase(id: id, kind: .mquake, requests: requests, probes: probes)
    }

    /// An optional alias list; empty aliases are dropped (they would match any answer).
    private static func aliases(_ record: RecordReader, _ key: String) throws(DatasetError) -> [String] {
        try record.stringsAllowingEmpty(key, required: false).filter { !$0.allSatisfy(\.isWhitespace) }
    }
}
