import Editing
import Testing

@testable import Evaluation

@Suite struct JSONLLoaderTests {
    @Test func loadsTheCustomFixture() throws {
        let dataset = try loadFixture(.custom, "custom.jsonl")
        #expect(dataset.kind == .custom && dataset.format == "ibke-jsonl")
        // Ids: given ("paris", 7) or the record index (the blank line 2 is not a record).
        #expect(dataset.cases.map(\.id) == ["paris", "1", "7"])

        let eiffel = "The Eiffel Tower is located in the city of"
        let paris = dataset.cases[0]
        #expect(
            paris.requests == [
                EditRequest(
                    prompt: eiffel, subject: "Eiffel Tower", targetNew: "Rome",
                    targetTrue: "Paris")
            ])
        #expect(
            paris.probes == [
                Probe(role: .reliability, prompt: eiffel, target: "Rome"),
                Probe(role: .rewrite, prompt: eiffel, target: "Rome", alternative: "Paris"),
                Probe(role: .generality, prompt: "Where is the Eiffel Tower? It is in", target: "Rome"),
                Probe(role: .paraphrase, prompt: "Where is the Eiffel Tower? It is in", target: "Rome", alternative: "Paris"),
                Probe(role: .generality, prompt: "The Eiffel Tower stands in", target: "Rome"),
                Probe(role: .paraphrase, prompt: "The Eiffel Tower stands in", target: "Rome", alternative: "Paris"),
                Probe(role: .locality, prompt: "The Colosseum is located in the city of", target: "Rome"),
            ])

        let darrieux = dataset.cases[1]
        #expect(darrieux.requests[0].prompt == "The mother tongue of {} is")
        #expect(darrieux.requests[0].targetTrue == nil)
        #expect(
            darrieux.probes == [
                Probe(role: .reliability, prompt: "The mother tongue of Danielle Darrieux is", target: "English"),
                Probe(role: .generality, prompt: "Danielle Darrieux's native language is", target: "English"),
                Probe(role: .locality, prompt: "The mother tongue of Michel Rocard is", target: "French"),
                Probe(role: .locality, prompt: "The capital of France is", target: "Paris"),
                Probe(role: .portability, prompt: "The language Danielle Darrieux wrote her letters in is", target: "English"),
            ])

        let messi = dataset.cases[2]
        #expect(messi.probes == [Probe(role: .reliability, prompt: "What sport does Lionel Messi play?", target: "basketball")])
    }

    @Test func limitCountsRecordsNotLines() throws {
        let dataset = try Dataset.load(DatasetSpec(parsing: "custom:" + datasetFixture("custom.jsonl")), limit: 2)
        #expect(dataset.cases.map(\.id) == ["paris", "1"])
    }

    @Test func acceptsCRLFAndAMissingFinalNewline() throws {
        let line = #"{"prompt": "Paris is in", "subject": "Paris", "target_new": "Italy"}"#
        let dataset = try loadText(
            .custom, "\(line)\r\n\r\n\(line.replacingOccurrences(of: "Italy", with: "Spain"))",
            name: "edits.jsonl")
        #expect(dataset.cases.map { $0.requests[0].targetNew } == ["Italy", "Spain"])
        #expect(dataset.cases.map(\.id) == ["0", "1"])
    }

    @Test func errorsGiveTheLine() throws {
        let good = #"{"prompt": "Paris is in", "subject": "Paris", "target_new": "Italy"}"#
        let syntax = try loadError(.custom, "\(good)\n\n{\"prompt\": \"x\",, \"subject\": \"x\"}\n", name: "edits.jsonl")
        #expect(syntax.message == "\(syntax.path): line 3, column 16 (byte 85): invalid JSON: expected a string key, found character ','")
        #expect(syntax.path.hasSuffix("edits.jsonl"))

        let unknown = try loadError(.custom, "\(good)\n\(good.dropLast()), \"rephrases\": [\"x\"]}\n")
        #expect(
            unknown.message
                == "\(unknown.path): line 2 (case_id 1): field \"rephrases\": unknown field; expected one of id, locality, portability, prompt, rephrase, subject, target_new, target_true"
        )

        let subject = try loadError(.custom, #"{"id": "a", "prompt": "Paris is in", "subject": "Lyon", "target_new": "Italy"}"#)
        #expect(
            subject.message
                == "\(subject.path): line 1 (case_id a): field \"subject\": \"Lyon\" does not occur in the prompt \"Paris is in\"")

        let locality = try loadError(.custom, "\(good.dropLast()), \"locality\": \"The capital of Italy is\"}")
        #expect(
            locality.message
                == "\(locality.path): line 1 (case_id 0): field \"locality\": expected an object {\"prompt\", \"answer\"} or a list of them, found string"
        )

        let answer = try loadError(
            .custom, "\(good.dropLast()), \"portability\": [{\"prompt\": \"p\", \"answer\": \"a\"}, {\"prompt\": \"q\"}]}")
        #expect(answer.message == "\(answer.path): line 1 (case_id 0): field \"portability[1].answer\": missing; expected a string")

        let rephrase = try loadError(.custom, "\(good.dropLast()), \"rephrase\": 4}")
        #expect(
            rephrase.message
                == "\(rephrase.path): line 1 (case_id 0): field \"rephrase\": expected a string or a list of strings, found integer")

        let duplicate = try loadError(.custom, "\(good.dropLast()), \"id\": 5}\n\(good.dropLast()), \"id\": \"5\"}")
        #expect(duplicate.message == "\(duplicate.path): line 2 (case_id 5): field \"id\": duplicate id \"5\" (also at line 1)")

        let notObject = try loadError(.custom, "\(good)\n[1]")
        #expect(notObject.message == "\(notObject.path): line 2: expected a JSON object, found array")

        let missing = try loadError(.custom, #"{"prompt": "Paris is in", "subject": "Paris"}"#)
        #expect(missing.message == "\(missing.path): line 1 (case_id 0): field \"target_new\": missing; expected a string")
    }
}
