import Editing
import Foundation
import Testing

@testable import Evaluation

@Suite struct ZsRELoaderTests {
    @Test func loadsTheEvalFixtureWithPortability() throws {
        let dataset = try loadFixture(.zsre, "zsre_eval.json")
        #expect(dataset.kind == .zsre)
        #expect(dataset.format == "zsre-mend")
        #expect(dataset.cases.count == 15)
        #expect(dataset.skipped.isEmpty)
        #expect(dataset.cases.map(\.id) == (0..<15).map(String.init))
        #expect(dataset.sha256.count == 64)

        let volvo = dataset.cases[3]
        #expect(volvo.kind == .zsre)
        #expect(
            volvo.requests == [
                EditRequest(
                    prompt: "What company made Volvo B12M?", subject: "Volvo B12M",
                    targetNew: "Volkswagen Group", targetTrue: "Volvo Buses")
            ])
        #expect(
            volvo.probes == [
                Probe(role: .reliability, prompt: "What company made Volvo B12M?", target: "Volkswagen Group"),
                Probe(role: .generality, prompt: "Volvo B12M's manufacturer was who?", target: "Volkswagen Group"),
                Probe(
                    role: .locality, prompt: "nq question: who sang it must have been love but its over now",
                    target: "Roxette"),
                Probe(
                    role: .specificity, prompt: "nq question: who sang it must have been love but its over now?",
                    target: "Roxette"),
                Probe(
                    role: .portability,
                    prompt: "In which city is the headquarters of the company that made the Volvo B12M?",
                    target: "Wolfsburg, Germany"),
            ])
        #expect(volvo.generationPrompts.isEmpty)
    }

    @Test func goldTargetUsesTheFirstAnswer() throws {
        let dataset = try loadFixture(.zsre, "zsre_eval.json", zsreTarget: .gold)
        let volvo = dataset.cases[3]
        #expect(volvo.requests[0].targetNew == "Volvo Buses")
        #expect(volvo.requests[0].targetTrue == nil)
        #expect(probes(volvo, .reliability).map(\.target) == ["Volvo Buses"])
        #expect(probes(volvo, .generality).map(\.target) == ["Volvo Buses"])
        #expect(ZsRETarget.gold.field == "answers[0]" && ZsRETarget.alt.field == "alt")
    }

    @Test func skipsRecordsWithAnEmptyAlt() throws {
        // Fixture record 12 is record 534 of zsre_mend_train-1k.json, whose `alt` is "".
        let dataset = try loadFixture(.zsre, "zsre_train.json")
        #expect(dataset.cases.count == 12)
        #expect(dataset.skipped == ["record 12: `alt` is empty"])
        #expect(dataset.cases.last?.id == "11")
        let first = dataset.cases[0]
        #expect(
            first.requests[0]
                == EditRequest(
                    prompt: "What is the product made by UniFirst?", subject: "UniFirst",
                    targetNew: "unmanned aircraft", targetTrue: "uniform"))
        #expect(first.probes.map(\.role) == [.reliability, .generality, .locality, .specificity])

        // With the gold target the record is usable.
        let gold = try loadFixture(.zsre, "zsre_train.json", zsreTarget: .gold)
        #expect(gold.cases.count == 13 && gold.skipped.isEmpty)
        #expect(gold.cases[12].requests[0].targetNew == "female")
    }

    @Test func limitReadsTheFirstRecords() throws {
        #expect(try loadFixture(.zsre, "zsre_eval.json", limit: 4).cases.map(\.id) == ["0", "1", "2", "3"])
        #expect(try loadFixture(.zsre, "zsre_eval.json", limit: 0).cases.isEmpty)
        #expect(try loadFixture(.zsre, "zsre_train.json", limit: 100).cases.count == 12)
    }

    @Test func subjectTakesTheSpellingOfSrc() throws {
        #expect(ZsRELoader.subjectAsWritten("Paris", in: "Where is Paris?") == "Paris")
        #expect(ZsRELoader.subjectAsWritten("paris", in: "Where is PARIS?") == "PARIS")
        #expect(ZsRELoader.subjectAsWritten("Lyon", in: "Where is Paris?") == "Lyon")
        let dataset = try loadText(
            .zsre,
            """
            [{"subject": "the beatles", "src": "Who managed The Beatles?", "rephrase": "The Beatles were managed by?",
              "alt": "Madonna", "answers": ["Brian Epstein"], "loc": "nq question: x", "loc_ans": "y"}]
            """)
        #expect(dataset.cases[0].requests[0].subject == "The Beatles")
    }

    @Test func malformedRecordsNameFileRecordAndField() throws {
        let good =
            #""src": "Who?", "subject": "Who", "rephrase": "Who is?", "alt": "a", "answers": ["b"], "loc": "nq question: q", "loc_ans": "c""#
        let (message, path) = try loadError(
            .zsre, "[{\(good)}, {\(good.replacingOccurrences(of: "\"rephrase\": \"Who is?\"", with: "\"rephrase\": 3"))}]",
            name: "zsre_eval.json")
        #expect(message == "\(path): record 1: field \"rephrase\": expected a string, found integer")
        #expect(path.hasSuffix("zsre_eval.json"))

        let missing = try loadError(.zsre, "[{\(good.replacingOccurrences(of: "\"loc_ans\": \"c\"", with: "\"x\": 1"))}]")
        #expect(missing.message == "\(missing.path): record 0: field \"loc_ans\": missing; expected a string")

        let empty = try loadError(.zsre, "[{\(good.replacingOccurrences(of: "\"src\": \"Who?\"", with: "\"src\": \" \""))}]")
        #expect(empty.message == "\(empty.path): record 0: field \"src\": is empty; expected a non-empty string")

        let answer = try loadError(.zsre, "[{\(good.replacingOccurrences(of: "[\"b\"]", with: "[\"b\", null]"))}]")
        #expect(answer.message == "\(answer.path): record 0: field \"answers[1]\": expected a string, found null")

        let portability = try loadError(.zsre, "[{\(good), \"portability\": {\"New Question\": \"Q?\"}}]")
        #expect(
            portability.message
                == "\(portability.path): record 0: field \"portability.New Answer\": missing; expected a string")

        let notObject = try loadError(.zsre, "[{\(good)}, [1, 2]]")
        #expect(notObject.message == "\(notObject.path): record 1: expected a JSON object, found array")

        let notList = try loadError(.zsre, "{\"data\": []}")
        #expect(notList.message == "\(notList.path): expected a JSON list of records at the top level, found object")

        let syntax = try loadError(.zsre, "[\n  {\"src\": \"a\",\n   \"subject\" \"b\"}\n]")
        #expect(syntax.message == "\(syntax.path): line 3, column 14 (byte 30): invalid JSON: expected ':', found character '\"'")
    }

    @Test func missingFilesAreNamed() throws {
        let path = "/nonexistent/zsre.json"
        #expect(throws: DatasetError.unreadable(file: path, detail: "no such file")) {
            try Dataset.load(DatasetSpec(kind: .zsre, path: path))
        }
        let folder = FileManager.default.temporaryDirectory.path
        #expect(throws: DatasetError.unreadable(file: folder, detail: "is a directory, not a file")) {
            try Dataset.load(DatasetSpec(kind: .zsre, path: folder))
        }
    }
}
