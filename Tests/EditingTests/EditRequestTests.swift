import Models
import Testing

@testable import Editing

@Suite struct EditRequestTests {
    @Test func templatesAndFinishedPromptsGiveTheSameTokens() throws {
        let model = try TestModels.tinyLlama()
        let a = try EditRequest(prompt: "{} is located in", subject: "The tower", targetNew: "Rome").prepared(for: model)
        let b = try EditRequest(prompt: "The tower is located in", subject: "The tower", targetNew: "Rome").prepared(for: model)
        #expect(a.prompt == b.prompt && a.target == b.target && a.subjectLast == b.subjectLast)
        #expect(a.target == model.encodeContinuation(" Rome"))
        // The subject's last token ends the tokenised prefix "The tower".
        let prefix = model.encode("The tower")
        #expect(a.subjectLast == prefix.count - 1)
        #expect(Array(a.prompt.prefix(prefix.count)) == prefix)
    }

    @Test func badRequestsAreRejectedWithTheField() throws {
        let model = try TestModels.tinyLlama()
        #expect(throws: EditRequestError.emptyField("target_new", request: 3)) {
            try EditRequest(prompt: "{} is in", subject: "X", targetNew: "  ").prepared(for: model, index: 3)
        }
        #expect(throws: EditRequestError.subjectNotInPrompt(subject: "Paris", prompt: "The tower is in", request: 0)) {
            try EditRequest(prompt: "The tower is in", subject: "Paris", targetNew: "Rome").prepared(for: model)
        }
        let long = String(repeating: "word ", count: model.config.contextLength)
        #expect(throws: EditRequestError.self) {
            try EditRequest(prompt: "{} " + long, subject: "X", targetNew: "Y").prepared(for: model)
        }
    }
}
