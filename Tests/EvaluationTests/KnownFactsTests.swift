import Editing
import Foundation
import Models
import TensorCore
import Testing

@testable import Evaluation

@Suite struct KnownFactsFileTests {
    @Test func readsROMEsLayout() throws {
        let file = try KnownFactsFile.load(path: try datasetFixture("known_facts.json"))
        #expect(file.facts.count == 14)
        #expect(
            file.facts[0]
                == KnownFact(
                    id: "0", subject: "Vinson Massif",
                    prompt: "Vinson Massif is located in the continent of", attribute: "Antarctica"))
        #expect(file.sha256.count == 64)
    }

    @Test func badRecordsNameTheFileTheRecordAndTheField() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-knowns-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("k.json")
        func message(_ text: String) throws -> String {
            try Data(text.utf8).write(to: url)
            do {
                _ = try KnownFactsFile.load(path: url.path)
                return ""
            } catch {
                return "\(error)"
            }
        }
        let fact = #"{"known_id": 1, "subject": "Rhine", "prompt": "Rhine belongs to the continent of", "attribute": "Europe"}"#
        #expect(try message("[\(fact), \(fact)]") == "\(url.path): record 1: field \"known_id\": duplicate id \"1\" (also at record 0)")
        #expect(
            try message(#"[{"known_id": 1, "subject": "Rhine", "prompt": "Rhine is in"}]"#)
                == "\(url.path): record 0 (case_id 1): field \"attribute\": missing; expected a string")
        #expect(try message("{}").hasPrefix("\(url.path): expected a JSON list of records at the top level, found"))
    }
}

/// Retention on the default model: the facts it knows are found, an unedited model keeps all of
/// them, a disruptive edit does not, and facts about an edited subject are left out.
@Suite(.enabled(if: ParityModel.isAvailable), .serialized) struct KnownFactRetentionTests {
    @Test func selectsKnownFactsAndMeasuresWhatAnEditChanges() throws {
        let model = try LanguageModel.load(ParityModel.url)
        let facts = try KnownFactsFile.load(path: try datasetFixture("known_facts.json")).facts
        let retention = try KnownFactRetention(model: model, facts: facts)
        #expect(retention.tried == 14)
        #expect(retention.known.map(\.fact.id) == ["6", "7", "12", "15", "21", "29", "40", "49", "50", "52"])

        let unedited = try #require(try retention.measure(model: model, editedSubjects: []))
        #expect(unedited.retention == 1)
        #expect(unedited.changed.isEmpty)

        // Scale the last block's MLP output up: the model's answers change.
        let id = ParameterID(layer: model.config.layerCount - 1, .feedForwardDown)
        let w = try #require(model.transformer.weights.tensor(id, config: model.config))
        let delta = WeightDelta(entries: [.init(id, .dense(Tensor(shape: w.shape, values: w.scalars.map { $0 * 40 })))])
        let applied = try model.transformer.apply(delta, source: "test")
        let edited = try #require(try retention.measure(model: model, editedSubjects: ["Rhine"]))
        applied.revert()
        #expect(edited.retention < 1)
        #expect(!edited.changed.isEmpty)
        #expect(!edited.changed.contains("49"), "the fact about the edited subject is left out")
        #expect(abs(edited.retention - Double(9 - edited.changed.count) / 9) < 1e-12)
        #expect(try retention.measure(model: model, editedSubjects: [])?.retention == 1, "revert restores every answer")
    }
}
