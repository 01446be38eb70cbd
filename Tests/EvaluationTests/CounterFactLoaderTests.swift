import Editing
import Testing

@testable import Evaluation

@Suite struct CounterFactLoaderTests {
    @Test func loadsTheEasyEditLayout() throws {
        let dataset = try loadFixture(.counterfact, "counterfact_easyedit.json")
        #expect(dataset.kind == .counterfact)
        #expect(dataset.format == "counterfact-easyedit")
        #expect(dataset.cases.count == 15)
        #expect(dataset.cases.map(\.id).prefix(4) == ["0", "1", "4", "5"])
        #expect(dataset.cases.last?.id == "39")

        let darrieux = dataset.cases[0]
        #expect(
            darrieux.requests == [
                EditRequest(
                    prompt: "The mother tongue of Danielle Darrieux is", subject: "Danielle Darrieux",
                    targetNew: "English", targetTrue: "French")
            ])
        #expect(
            darrieux.probes == [
                Probe(
                    role: .rewrite, prompt: "The mother tongue of Danielle Darrieux is", target: "English",
                    alternative: "French"),
                Probe(
                    role: .paraphrase, prompt: "Where Danielle Darrieux is from, people speak the language of",
                    target: "English", alternative: "French"),
                Probe(
                    role: .neighborhood, prompt: "Michel Rocard is a native speaker of", target: "English",
                    alternative: "French"),
            ])
        #expect(darrieux.generationPrompts.isEmpty)

        let lyon = dataset.cases[2]
        #expect(lyon.requests[0].targetNew == "Manila" && lyon.requests[0].targetTrue == "Beirut")
        #expect(
            probes(lyon, .neighborhood) == [
                Probe(role: .neighborhood, prompt: "The twin city of Trieste is", target: "Manila", alternative: "Beirut")
            ])
    }

    @Test func loadsTheROMELayout() throws {
        let dataset = try loadFixture(.counterfact, "counterfact_rome.json")
        #expect(dataset.format == "counterfact-rome")
        #expect(dataset.cases.map(\.id) == ["0", "1", "4"])

        let darrieux = dataset.cases[0]
        #expect(
            darrieux.requests == [
                EditRequest(
                    prompt: "The mother tongue of {} is", subject: "Danielle Darrieux", targetNew: "English",
                    targetTrue: "French")
            ])
        #expect(
            probes(darrieux, .rewrite) == [
                Probe(
                    role: .rewrite, prompt: "The mother tongue of Danielle Darrieux is", target: "English",
                    alternative: "French")
            ])
        #expect(
            probes(darrieux, .paraphrase).map(\.prompt) == [
                "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
                "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
            ])
        let neighbours = probes(darrieux, .neighborhood)
        #expect(neighbours.count == 10)
        #expect(
            neighbours.first
                == Probe(
                    role: .neighborhood, prompt: "The mother tongue of Léon Blum is",
                    target: "English", alternative: "French"))
        #expect(neighbours.last?.prompt == "Melchior de Vogüé, speaker of")
        #expect(darrieux.probes.count == 13)
        #expect(darrieux.generationPrompts.count == 10)
        #expect(darrieux.generationPrompts.first == "Danielle Darrieux's mother tongue is")

        let lyon = dataset.cases[2]
        #expect(lyon.requests[0].text == "What is the twin city of Lyon? It is")
        #expect(lyon.probes.map(\.role) == [.rewrite, .paraphrase, .neighborhood])
        #expect(lyon.generationPrompts.isEmpty)
    }

    @Test func limitAndAlias() throws {
        let dataset = try Dataset.load(
            DatasetSpec(parsing: "cf:" + datasetFixture("counterfact_easyedit.json")),
            limit: 2)
        #expect(dataset.cases.map(\.id) == ["0", "1"])
    }

    @Test func malformedEasyEditRecordsNameTheCase() throws {
        let record = #"""
            {"case_id": 7, "prompt": "The capital of France is", "subject": "France", "target_new": "Rome",
             "ground_truth": "Paris", "rephrase_prompt": "France's capital is",
             "locality_prompt": "The capital of Italy is", "locality_ground_truth": "Rome"}
            """#
        let second = record.replacingOccurrences(of: "\"case_id\": 7", with: "\"case_id\": 8")
            .replacingOccurrences(of: "\"ground_truth\": \"Paris\"", with: "\"ground_truth\": [\"Paris\"]")
        let (message, path) = try loadError(.counterfact, "[\(record), \(second)]", name: "counterfact-edit.json")
        #expect(message == "\(path): record 1 (case_id 8): field \"ground_truth\": expected a string, found array")

        let duplicate = try loadError(.counterfact, "[\(record), \(record)]")
        #expect(duplicate.message == "\(duplicate.path): record 1 (case_id 7): field \"case_id\": duplicate id \"7\" (also at record 0)")

        let noID = try loadError(.counterfact, "[\(record.replacingOccurrences(of: "\"case_id\": 7, ", with: ""))]")
        #expect(noID.message == "\(noID.path): record 0: field \"case_id\": missing; expected an integer or a string")

        let empty = try loadError(
            .counterfact, "[\(record.replacingOccurrences(of: "\"target_new\": \"Rome\"", with: "\"target_new\": \"\""))]")
        #expect(empty.message == "\(empty.path): record 0 (case_id 7): field \"target_new\": is empty; expected a non-empty string")
    }

    @Test func malformedROMERecordsNameTheNestedField() throws {
        let record = #"""
            {"case_id": 3,
             "requested_rewrite": {"prompt": "The capital of {} is", "subject": "France",
                                   "target_new": {"str": "Rome"}, "target_true": {"str": "Paris"}},
             "paraphrase_prompts": ["France's capital is"], "neighborhood_prompts": ["The capital of Italy is"]}
            """#
        let ok = try loadText(.counterfact, "[\(record)]")
        #expect(ok.format == "counterfact-rome" && ok.cases[0].probes.count == 3)

        let (message, path) = try loadError(
            .counterfact, "[\(record.replacingOccurrences(of: "{\"str\": \"Rome\"}", with: "{\"id\": \"Q220\"}"))]")
        #expect(message == "\(path): record 0 (case_id 3): field \"requested_rewrite.target_new.str\": missing; expected a string")

        let template = try loadError(.counterfact, "[\(record.replacingOccurrences(of: "of {} is", with: "of France is"))]")
        #expect(
            template.message
                == "\(template.path): record 0 (case_id 3): field \"requested_rewrite.prompt\": expected a template with {} where the subject goes, found \"The capital of France is\""
        )

        let list = try loadError(
            .counterfact, "[\(record.replacingOccurrences(of: "[\"The capital of Italy is\"]", with: "[\"The capital of Italy is\", 5]"))]")
        #expect(list.message == "\(list.path): record 0 (case_id 3): field \"neighborhood_prompts[1]\": expected a string, found integer")

        let generation = try loadError(.counterfact, "[\(record.dropLast()), \"generation_prompts\": \"France is\"}]")
        #expect(
            generation.message
                == "\(generation.path): record 0 (case_id 3): field \"generation_prompts\": expected a list of strings, found string")
    }
}
