import Foundation
import Testing

/// `ibke edit` on the tiny Llama.
@Suite struct EditCommandTests {
    @Test func editPrintsBeforeAndAfterAndSavesTheDelta() throws {
        let folder = try TemporaryFolder()
        let delta = folder.appending("d.safetensors")
        let result = try IBKE.run(["edit", "--model", Fixtures.model("tiny-llama").path, "--prompt", "{} lives in",
                                   "--subject", "Alice", "--target", "the city", "--check", "Alice's home is in",
                                   "--save-delta", delta.path], timeout: 60)
        #expect(result.status == 0, "\(result)")
        for piece in ["before", "after", "paraphrase: Alice's home is in", "unrelated:", "top-5 after:"] {
            #expect(result.stdout.contains(piece), "\(piece): \(result)")
        }
        let header = try Data(contentsOf: delta).prefix(4096)
        #expect(String(decoding: header, as: UTF8.self).contains("ibke-delta-1"))
    }

    @Test func aSubjectMissingFromThePromptIsAnError() throws {
        let result = try IBKE.run(["edit", "--model", Fixtures.model("tiny-llama").path, "--prompt", "Bob lives in",
                                   "--subject", "Alice", "--target", "Rome"])
        #expect(result.status == 1)
        #expect(result.stderrLines.last?.contains("\"Alice\" does not occur in the prompt") == true, "\(result)")
    }
}
