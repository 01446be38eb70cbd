import Editing
import Foundation

/// Which zsRE field is the new target: the references disagree (METHODS.md §8.1, §10.4).
public enum ZsRETarget: String, Sendable, Codable, CaseIterable {
    /// `alt`, a wrong answer to teach (EasyEdit, MEND; the project default). Records with an
    /// empty `alt` are skipped, as EasyEdit does.
    case alt
    /// `answers[0]`, the gold answer (ROME, MEMIT), so the edit often teaches the true fact.
    case gold

    /// The source field, as recorded in run settings.
    public var field: String {
        switch self {
        case .alt: "alt"
        case .gold: "answers[0]"
        }
    }
}

/// zsRE in MEND's format (`zsre_mend_eval.json`, EasyEdit's portability subset): a list of
/// `{subject, src, rephrase, alt, answers, loc, loc_ans, [pred, cond, portability]}`.
enum ZsRELoader {
    static func load(_ file: DatasetFile, target: ZsRETarget, limit: Int?) throws(DatasetError) -> Dataset {
        var cases: [EvalCase] = []
        var skipped: [String] = []
        for (index, value) in try file.records().prefix(limit ?? .max).enumerated() {
            let record = try RecordReader(value, file: file.path, location: .init(index: index))
            switch try makeCase(record, index: index, target: target) {
            case .success(let evalCase): cases.append(evalCase)
            case .failure(let skip): skipped.append("record \(index): \(skip.reason)")
            }
        }
        return Dataset(
            kind: .zsre, format: "zsre-mend", path: file.path, sha256: file.sha256, cases: cases,
            skipped: skipped)
    }

    struct Skip: Error { let reason: String }

    /// The case, or why the record is skipped.
    static func makeCase(
        _ record: RecordReader, index: Int, target: ZsRETarget
    )
        throws(DatasetError) -> Result<EvalCase, Skip>
    {
        let src = try record.string("src")
        let subject = subjectAsWritten(try record.string("subject"), in: src)
        let rephrase = try record.string("rephrase")
        let alt = try record.string("alt", allowEmpty: true)
        // May be empty or hold an empty first answer: only the gold target needs one.
        let answers = try record.stringsAllowingEmpty("answers", required: true)
        let loc = try record.string("loc")
        let locAnswer = try record.string("loc_ans")

        let gold = answers.first.flatMap { $0.allSatisfy(\.isWhitespace) ? nil : $0 }
        let newTarget: String
        switch target {
        case .alt:
            guard !alt.allSatisfy(\.isWhitespace) else { return .failure(Skip(reason: "`alt` is empty")) }
            newTarget = alt
        case .gold:
            guard let gold else { return .failure(Skip(reason: "`answers[0]` is empty")) }
            newTarget = gold
        }
        // With the gold target the true answer is the target itself: no competing answer.
        let request = EditRequest(
            prompt: src, subject: subject, targetNew: newTarget,
            targetTrue: target == .alt ? gold : nil)
        var probes = [
            Probe(role: .reliability, prompt: src, target: newTarget),
            Probe(role: .generality, prompt: rephrase, target: newTarget),
            Probe(role: .locality, prompt: loc, target: locAnswer),
            // ROME's zsRE neighbourhood prompt: `loc + "?"` (dsets/zsre.py).
            Probe(role: .specificity, prompt: loc + "?", target: locAnswer),
        ]
        if record.has("portability") {
            let portability = try record.object("portability")
            probes.append(
                Probe(
                    role: .portability, prompt: try portability.string("New Question"),
                    target: try portability.string("New Answer")))
        }
        return .success(EvalCase(id: String(index), kind: .zsre, requests: [request], probes: probes))
    }

    /// The subject spelled as in `src`: when it occurs there only with different letter case
    /// (`"paris"` in "… of Paris?"), the prompt's spelling, so that the editor can locate its
    /// tokens. A subject that does not occur at all is kept: the editor rejects that request
    /// with an error naming it, rather than the whole file failing here.
    static func subjectAsWritten(_ subject: String, in src: String) -> String {
        if src.contains(subject) { return subject }
        guard let range = src.range(of: subject, options: .caseInsensitive) else { return subject }
        return String(src[range])
    }
}
