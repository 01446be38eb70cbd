import Testing

@testable import Evaluation

@Suite struct DatasetSpecTests {
    @Test func parsesKindsAndAliases() throws {
        #expect(try DatasetSpec(parsing: "zsre:data/zsre.json") == DatasetSpec(kind: .zsre, path: "data/zsre.json"))
        #expect(try DatasetSpec(parsing: "counterfact:cf.json").kind == .counterfact)
        #expect(try DatasetSpec(parsing: "CF:cf.json") == DatasetSpec(kind: .counterfact, path: "cf.json"))
        #expect(try DatasetSpec(parsing: "mquake:/abs/MQuAKE-CF.json").path == "/abs/MQuAKE-CF.json")
        #expect(try DatasetSpec(parsing: "jsonl:edits.jsonl").kind == .custom)
        #expect(try DatasetSpec(parsing: "custom:edits.jsonl").kind == .custom)
        // Only the first colon separates.
        #expect(try DatasetSpec(parsing: "zsre:C:/data/a:b.json").path == "C:/data/a:b.json")
        #expect(DatasetSpec(kind: .custom, path: "e.jsonl").description == "jsonl:e.jsonl")
        #expect(DatasetSpec(kind: .counterfact, path: "c.json").description == "counterfact:c.json")
    }

    @Test func rejectsBadSpecs() {
        #expect(
            throws: DatasetError.badSpec(
                spec: "squad:x.json",
                problem:
                    "unknown dataset kind \"squad\"; expected one of zsre, counterfact (cf), mquake, jsonl (custom)")
        ) {
            try DatasetSpec(parsing: "squad:x.json")
        }
        #expect(
            throws: DatasetError.badSpec(
                spec: "zsre.json",
                problem:
                    "expected KIND:PATH with KIND one of zsre, counterfact (cf), mquake, jsonl (custom)")
        ) {
            try DatasetSpec(parsing: "zsre.json")
        }
        #expect(throws: DatasetError.badSpec(spec: "zsre:", problem: "no path after \"zsre:\"")) {
            try DatasetSpec(parsing: "zsre:")
        }
        #expect(DatasetError.badSpec(spec: "squad:x.json", problem: "p").description == "dataset \"squad:x.json\": p")
    }

    @Test func rejectsANegativeLimit() throws {
        #expect(throws: DatasetError.invalidArgument("dataset limit must be 0 or more, got -1")) {
            try Dataset.load(DatasetSpec(kind: .zsre, path: datasetFixture("zsre_eval.json")), limit: -1)
        }
    }

    @Test func hashesTheFile() throws {
        let dataset = try loadFixture(.custom, "custom.jsonl")
        #expect(dataset.path.hasSuffix("datasets/custom.jsonl"))
        // `sha256sum custom.jsonl`
        #expect(dataset.sha256 == "80a10e0ef3eeb5723cf20fd1e00087b06a7bb7c6235683bf76f7cfca5b4e42f2")
    }
}
