import Editing
import Testing

@testable import Evaluation

@Suite struct MQuAKELoaderTests {
    @Test func loadsAllEditsAndQuestionsOfACase() throws {
        let dataset = try loadFixture(.mquake, "mquake.json")
        #expect(dataset.kind == .mquake && dataset.format == "mquake")
        #expect(dataset.cases.count == 10)
        #expect(dataset.cases.map(\.id).prefix(3) == ["7417", "7428", "7430"])

        let jude = dataset.cases[0]
        #expect(jude.requests.count == 4)
        #expect(
            jude.requests[0]
                == EditRequest(
                    prompt: "{} was performed by", subject: "Hey Jude",
                    targetNew: "Madonna", targetTrue: "The Beatles"))
        #expect(
            jude.requests[3]
                == EditRequest(
                    prompt: "The official language of {} is", subject: "Australia",
                    targetNew: "Arabic", targetTrue: "English"))
        let hops = probes(jude, .multiHop)
        #expect(hops.count == 3)
        #expect(
            hops[0]
                == Probe(
                    role: .multiHop,
                    prompt:
                        "What is the official language of the country of citizenship of the director/manager of \"Hey Jude\"'s performer?",
                    target: "Arabic", alternative: "English", aliases: ["ar", "Arabian language", "Arabic language"]))
        let facts = probes(jude, .editedFact)
        #expect(facts.count == 4)
        #expect(
            facts[0]
                == Probe(
                    role: .editedFact, prompt: "Hey Jude was performed by", target: "Madonna",
                    alternative: "The Beatles",
                    aliases: ["Madonna Ciccone", "Madonna Louise Ciccone", "Madonna Louise Veronica Ciccone"]))
        #expect(jude.probes.map(\.role) == [.multiHop, .multiHop, .multiHop, .editedFact, .editedFact, .editedFact, .editedFact])
    }

    @Test func editedFactsWithoutAliases() throws {
        let anatomy = try loadFixture(.mquake, "mquake.json").cases[1]
        #expect(anatomy.id == "7428")
        let facts = probes(anatomy, .editedFact)
        #expect(facts[0].prompt == "The origianl broadcaster of Grey's Anatomy is")
        #expect(facts[0].aliases == ["British Broadcasting Corporation"])
        #expect(
            facts[3]
                == Probe(
                    role: .editedFact, prompt: "The capital of Australia is", target: "Oderzo",
                    alternative: "Canberra"))
        #expect(
            probes(anatomy, .multiHop).allSatisfy {
                $0.target == "Oderzo" && $0.alternative == "Washington, D.C." && $0.aliases.isEmpty
            })
    }

    @Test func malformedCasesNameTheEditAndField() throws {
        let rewrite = #"""
            {"prompt": "{} was performed by", "subject": "Hey Jude", "target_new": {"str": "Madonna"},
             "target_true": {"str": "The Beatles"}}
            """#
        let record = #"""
            {"case_id": 11, "requested_rewrite": [REWRITES], "questions": ["Who performed Hey Jude?"],
             "answer": "The Beatles", "new_answer": "Madonna"}
            """#
        let ok = try loadText(.mquake, "[\(record.replacingOccurrences(of: "REWRITES", with: rewrite))]")
        #expect(ok.cases[0].probes.count == 2)

        let second = rewrite.replacingOccurrences(of: "{\"str\": \"The Beatles\"}", with: "\"The Beatles\"")
        let (message, path) = try loadError(
            .mquake, "[\(record.replacingOccurrences(of: "REWRITES", with: rewrite + ", " + second))]", name: "MQuAKE-CF.json")
        #expect(
            message == "\(path): record 0 (case_id 11): field \"requested_rewrite[1].target_true\": expected a JSON object, found string")

        let questions = try loadError(
            .mquake,
            "[\(record.replacingOccurrences(of: "REWRITES", with: rewrite).replacingOccurrences(of: "[\"Who performed Hey Jude?\"]", with: "[]"))]"
        )
        #expect(
            questions.message == "\(questions.path): record 0 (case_id 11): field \"questions\": is empty; expected at least one question")

        let edits = try loadError(.mquake, "[\(record.replacingOccurrences(of: "REWRITES", with: ""))]")
        #expect(edits.message == "\(edits.path): record 0 (case_id 11): field \"requested_rewrite\": is empty; expected at least one edit")

        let alias = try loadError(
            .mquake, "[\(record.replacingOccurrences(of: "REWRITES", with: rewrite).dropLast()), \"new_answer_alias\": [\"x\", 2]}]")
        #expect(alias.message == "\(alias.path): record 0 (case_id 11): field \"new_answer_alias[1]\": expected a string, found integer")
    }
}
