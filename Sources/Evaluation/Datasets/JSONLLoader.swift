import Editing
import Foundation
import ModelFormats

/// A user's own edits, one JSON object per line (Docs/datasets.md). Stricter than the benchmark
/// loaders, because a person wrote the file: unknown fields (a misspelt `rephrases`) and a
/// subject missing from its prompt are errors at load time, with the line number.
enum JSONLLoader {
    static let fields: Set = [
        "id", "prompt", "subject", "target_new", "target_true", "rephrase", "locality",
        "portability",
    ]

    static func load(_ file: DatasetFile, limit: Int?) throws(DatasetError) -> Dataset {
        var cases: [EvalCase] = []
        var ids = CaseIDs()
        for (lineIndex, range) in lineRanges(file.data).enumerated() {
            if let limit, cases.count >= limit { break }
            let text = file.data[range]
            if text.allSatisfy({ [0x20, 0x09, 0x0D].contains($0) }) { continue }
            let value = try DatasetFile.parse(
                text, file: file.path, lineOffset: lineIndex,
                byteOffset: range.lowerBound - file.data.startIndex)
            let location = DatasetError.RecordLocation(index: cases.count, line: lineIndex + 1)
            var record = try RecordReader(value, file: file.path, location: location)
            let id = try record.has("id") ? record.id("id") : String(cases.count)
            record.location.caseID = id
            try ids.insert(id, field: "id", of: record)
            cases.append(try makeCase(record, id: id))
        }
        return Dataset(kind: .custom, format: "ibke-jsonl", path: file.path, sha256: file.sha256, cases: cases)
    }

    /// Byte ranges of the lines, without their `\n` (a `\r` before it stays and parses as
    /// whitespace).
    static func lineRanges(_ data: Data) -> [Range<Data.Index>] {
        var ranges: [Range<Data.Index>] = []
        var start = data.startIndex
        while let newline = data[start...].firstIndex(of: 0x0A) {
            ranges.append(start..<newline)
            start = newline + 1
        }
        if start < data.endIndex { ranges.append(start..<data.endIndex) }
        return ranges
    }

    static func makeCase(_ record: RecordReader, id: String) throws(DatasetError) -> EvalCase {
        if let unknown = record.object.first(where: { !fields.contains($0.key) }) {
            throw record.error(unknown.key, "unknown field; expected one of \(fields.sorted().joined(separator: ", "))")
        }
        let request = EditRequest(
            prompt: try record.string("prompt"), subject: try record.string("subject"),
            targetNew: try record.string("target_new"),
            targetTrue: try record.optionalString("target_true"))
        guard request.template != nil else {
            throw record.error("subject", "\"\(request.subject)\" does not occur in the prompt \"\(request.prompt)\"")
        }
        let new = request.targetNew
        let old = request.targetTrue
        var probes = [Probe(role: .reliability, prompt: request.text, target: new)]
        if let old { probes.append(Probe(role: .rewrite, prompt: request.text, target: new, alternative: old)) }
        for rephrase in try rephrases(record) {
            probes.append(Probe(role: .generality, prompt: rephrase, target: new))
            if let old { probes.append(Probe(role: .paraphrase, prompt: rephrase, target: new, alternative: old)) }
        }
        for (prompt, answer) in try promptAnswers(record, "locality") {
            probes.append(Probe(role: .locality, prompt: prompt, target: answer))
        }
        for (prompt, answer) in try promptAnswers(record, "portability") {
            probes.append(Probe(role: .portability, prompt: prompt, target: answer))
        }
        return EvalCase(id: id, kind: .custom, requests: [request], probes: probes)
    }

    /// `rephrase`: a string or a list of strings.
    private static func rephrases(_ record: RecordReader) throws(DatasetError) -> [String] {
        guard let value = record.value("rephrase") else { return [] }
        if value.stringValue != nil { return [try record.string("rephrase")] }
        guard value.arrayValue != nil else {
            throw record.error("rephrase", "expected a string or a list of strings, found \(value.kindName)")
        }
        return try record.strings("rephrase")
    }

    /// `locality` / `portability`: `{"prompt", "answer"}` or a list of them.
    private static func promptAnswers(
        _ record: RecordReader, _ key: String
    )
        throws(DatasetError) -> [(prompt: String, answer: String)]
    {
        guard let value = record.value(key) else { return [] }
        let items: [RecordReader]
        switch value {
        case .object: items = [try record.object(key)]
        case .array: items = try record.objects(key)
        default:
            throw record.error(
                key, "expected an object {\"prompt\", \"answer\"} or a list of them, found \(value.kindName)")
        }
        var pairs: [(prompt: String, answer: String)] = []
        for item in items {
            pairs.append((try item.string("prompt"), try item.string("answer")))
        }
        return pairs
    }
}
