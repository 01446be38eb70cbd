import Editing
import Foundation
import Hummingbird
import HummingbirdTesting
import Models
import Testing

@testable import Serving

/// The tiny Llama of ModelsTests' fixtures (read in place; each test loads its own copy).
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures")

private func tinyModel() throws -> LanguageModel {
    try LanguageModel.load(fixtures.appendingPathComponent("tiny-llama"))
}

private func makeHost(_ model: LanguageModel? = nil, journal: URL? = nil) throws -> ModelHost {
    let host = try ModelHost(
        model: try model ?? tinyModel(), statistics: nil, editorFile: { _ in nil },
        journal: journal.map { EditJournal(directory: $0) })
    host.reportTokens = 4
    return host
}

private func settings(apiKey: String? = nil) -> ServerSettings {
    var s = ServerSettings()
    s.methods = [.ftM, .ftL]
    s.defaultMethod = .ftM
    s.apiKey = apiKey
    s.maxBodyBytes = 4096
    return s
}

private func body(_ object: [String: Any]) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
}

private func object(_ buffer: ByteBuffer) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
}

private let jsonHeaders: HTTPFields = [.contentType: "application/json"]

/// A fact the tiny model can be fine-tuned on (its vocabulary is byte-level BPE).
private var eiffel: [String: Any] { ["method": "ft-m", "prompt": "{} is located in", "subject": "The tower", "target": "Rome"] }

/// Every matrix of a model (not the norms).
private func allMatrices(_ model: LanguageModel) -> [ParameterID] {
    (0..<model.config.layerCount).flatMap { layer in
        ParameterID.Kind.allCases.map { ParameterID(layer: layer, $0) }
            .filter { !$0.isNorm && model.transformer.weights.shape(of: $0, config: model.config) != nil }
    }
}

/// The values of some matrices, to compare model states bit for bit.
private func snapshot(_ model: LanguageModel, _ ids: [ParameterID]) -> [[Float]] {
    ids.map { id in
        let w = model.transformer.weights.tensor(id, config: model.config)!
        return Array(UnsafeBufferPointer(start: w.pointer, count: w.count))
    }
}

@Suite struct ServerTests {
    @Test func completionsMatchTheModelsGreedyGenerationStreamedOrNot() async throws {
        let host = try makeHost()
        let expected = try tinyModel().generateText("Hello world", options: GenerationOptions(maxTokens: 8)).text
        let app = EditingServer.application(host: host, settings: settings())
        try await app.test(.router) { client in
            let plain = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try body(["prompt": "Hello world", "max_tokens": 8, "temperature": 0]))
            #expect(plain.status == .ok)
            let json = try object(plain.body)
            let choice = try #require((json["choices"] as? [[String: Any]])?.first)
            #expect(choice["text"] as? String == expected)
            #expect(["length", "stop"].contains(choice["finish_reason"] as? String))
            #expect((json["usage"] as? [String: Any])?["prompt_tokens"] as? Int == host.encode("Hello world").count)

            let streamed = try await client.execute(
                uri: "/v1/completions", method: .post, headers: jsonHeaders,
                body: try body([
                    "prompt": "Hello world", "max_tokens": 8, "temperature": 0,
                    "stream": true, "model": "original",
                ]))
            #expect(streamed.headers[.contentType] == "text/event-stream")
            let events = String(buffer: streamed.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.last == "data: [DONE]")
            var text = ""
            var finish: String?
            for event in events.dropLast() {
                let chunk = try #require(try JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any])
                #expect(chunk["model"] as? String == "original")
                let c = try #require((chunk["choices"] as? [[String: Any]])?.first)
                text += c["text"] as? String ?? ""
                if let f = c["finish_reason"] as? String { finish = f }
            }
            #expect(text == expected)
            #expect(finish != nil)
        }
    }

    @Test func editsAreListedAndRevertedBitForBitWhateverCameAfter() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try tinyModel()
        let host = try makeHost(model, journal: folder)
        let app = EditingServer.application(host: host, settings: settings())
        let ids = allMatrices(model)
        let pristine = snapshot(model, ids)
        try await app.test(.router) { client in
            let first = try await client.execute(uri: "/v1/edits", method: .post, headers: jsonHeaders, body: try body(eiffel))
            #expect(first.status == .ok, "\(String(buffer: first.body))")
            let report = try object(first.body)
            #expect(report["id"] as? String == "e1")
            let before = try #require(report["before"] as? [String: Any])
            let after = try #require(report["after"] as? [String: Any])
            #expect(try #require(after["target_probability"] as? Double) > (try #require(before["target_probability"] as? Double)))
            #expect((after["top"] as? [Any])?.count == 5)

            var second = eiffel
            second["target"] = "Berlin"
            second["subject"] = "The bridge"
            _ = try await client.execute(uri: "/v1/edits", method: .post, headers: jsonHeaders, body: try body(second))
            let list = try object(try await client.execute(uri: "/v1/edits", method: .get).body)
            #expect((list["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["e1", "e2"])

            // Reverting the first keeps the second: the model equals a fresh one with only e2's delta.
            let deleted = try await client.execute(uri: "/v1/edits/e1", method: .delete)
            #expect(deleted.status == .ok)
            let onlySecond = try tinyModel()
            try onlySecond.transformer.apply(try WeightDelta.load(from: folder.appendingPathComponent("e2.safetensors")))
            #expect(snapshot(model, ids) == snapshot(onlySecond, ids))
            #expect(snapshot(model, ids) != pristine)
            let missing = try await client.execute(uri: "/v1/edits/e1", method: .delete)
            #expect(missing.status == .notFound)
            #expect(try object(missing.body)["error"] != nil)
            _ = try await client.execute(uri: "/v1/edits/e2", method: .delete)
            #expect(snapshot(model, ids) == pristine)
        }
    }

    @Test func aRestartedHostComesBackWithExactlyTheAcknowledgedEdits() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try tinyModel()
        let host = try makeHost(model, journal: folder)
        let request = EditRequest(prompt: "{} is located in", subject: "The tower", targetNew: "Rome")
        _ = try await host.edit(EditSubmission(method: .ftM, request: request))
        _ = try await host.edit(
            EditSubmission(
                method: .ftM,
                request: EditRequest(
                    prompt: "{} is made of", subject: "Water",
                    targetNew: "gold")))
        try await host.revert(id: "e1")
        _ = try await host.edit(EditSubmission(method: .ftM, request: request))
        // An edit that died before its journal entry: a delta file nobody lists.
        try Data("not a delta".utf8).write(to: folder.appendingPathComponent("e9.safetensors"))

        let ids = allMatrices(model)
        let restarted = try tinyModel()
        let again = try makeHost(restarted, journal: folder)
        #expect(try await again.edits().map(\.id) == ["e2", "e3"])
        #expect(try await again.edits() == (try await host.edits()))
        #expect(snapshot(restarted, ids) == snapshot(model, ids))
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("e9.safetensors").path))
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("e1.safetensors").path))
        // New ids continue after the journaled ones.
        let next = try await again.edit(EditSubmission(method: .ftM, request: request))
        #expect(next.record.id == "e4")
    }

    @Test func theOriginalModelAnswersAsIfUneditedAndTheEditsStay() async throws {
        let model = try tinyModel()
        let host = try makeHost(model)
        let prompts = ["The tower is located in", "Hello world"]
        let fresh = try tinyModel().greedyContinuations(prompts.map { model.encode($0) }, maxTokens: 6, stopTokens: [])
        let report = try await host.edit(
            EditSubmission(
                method: .ftM,
                request: EditRequest(
                    prompt: "{} is located in", subject: "The tower", targetNew: "Rome")))
        #expect(report.after.targetProbability > report.before.targetProbability)
        let ids = allMatrices(model)
        let edited = snapshot(model, ids)
        let outputs = try await host.compare(prompts, maxTokens: 6)
        #expect(outputs.map(\.original) == fresh.map { model.tokenizer.decode($0, skipSpecialTokens: true) })
        #expect(snapshot(model, ids) == edited)
    }

    @Test func aBatchIsOneEditReportedPerRequest() async throws {
        let model = try tinyModel()
        let app = EditingServer.application(host: try makeHost(model), settings: settings())
        let ids = allMatrices(model)
        let pristine = snapshot(model, ids)
        try await app.test(.router) { client in
            let batch: [String: Any] = [
                "method": "ft-m",
                "requests": [
                    ["prompt": "{} is located in", "subject": "The tower", "target": "Rome"],
                    ["prompt": "{} is made of", "subject": "Water", "target": "stone"],
                ],
            ]
            let response = try await client.execute(uri: "/v1/edits", method: .post, headers: jsonHeaders, body: try body(batch))
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let report = try object(response.body)
            #expect(report["id"] as? String == "e1" && report["prompt"] == nil)
            let outcomes = try #require(report["requests"] as? [[String: Any]])
            #expect(outcomes.compactMap { $0["subject"] as? String } == ["The tower", "Water"])
            for outcome in outcomes {
                let before = try #require(outcome["before"] as? [String: Any])
                let after = try #require(outcome["after"] as? [String: Any])
                #expect(try #require(after["target_probability"] as? Double) > (try #require(before["target_probability"] as? Double)))
            }
            let list = try object(try await client.execute(uri: "/v1/edits", method: .get).body)
            let records = try #require(list["data"] as? [[String: Any]])
            #expect(records.count == 1 && (records[0]["requests"] as? [Any])?.count == 2)
            // Reverting the batch reverts both.
            _ = try await client.execute(uri: "/v1/edits/e1", method: .delete)
            #expect(snapshot(model, ids) == pristine)
        }
    }

    @Test func theEditsExportAsLoRAAndPEFTAdapters() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let app = EditingServer.application(host: try makeHost(journal: folder), settings: settings())
        try await app.test(.router) { client in
            let none = try await client.execute(uri: "/v1/export", method: .post, headers: jsonHeaders, body: try body(["format": "lora"]))
            #expect(none.status == .badRequest && String(buffer: none.body).contains("no edits"))
            let edit = try await client.execute(uri: "/v1/edits", method: .post, headers: jsonHeaders, body: try body(eiffel))
            #expect(edit.status == .ok)

            // The download is the adapter `ibke apply --format lora` writes from the journaled delta.
            let lora = try await client.execute(uri: "/v1/export", method: .post, headers: jsonHeaders, body: try body(["format": "lora"]))
            #expect(lora.status == .ok && lora.headers[.contentDisposition]?.contains("lora.gguf") == true)
            let expected = folder.appendingPathComponent("expected.gguf")
            let delta = try WeightDelta.load(from: folder.appendingPathComponent("e1.safetensors"))
            try AdapterExport.write([delta], of: try tinyModel(), to: expected, format: .lora)
            #expect(Data(lora.body.readableBytesView) == (try Data(contentsOf: expected)))

            let peft = try await client.execute(
                uri: "/v1/export", method: .post, headers: jsonHeaders,
                body: try body(["format": "peft", "path": "mine"]))
            #expect(peft.status == .ok, "\(String(buffer: peft.body))")
            let written = try #require(try object(peft.body)["path"] as? String)
            #expect(written == folder.appendingPathComponent("exports/mine").path)
            #expect(FileManager.default.fileExists(atPath: written + "/adapter_config.json"))
            #expect(FileManager.default.fileExists(atPath: written + "/adapter_model.safetensors"))
        }
    }

    @Test func badRequestsGetJSONErrorsThatSayWhatWasWrong() async throws {
        let app = EditingServer.application(host: try makeHost(), settings: settings())
        try await app.test(.router) { client in
            func expectError(
                _ uri: String, _ payload: ByteBuffer?, _ status: HTTPResponse.Status, _ words: String,
                method: HTTPRequest.Method = .post
            ) async throws {
                let response = try await client.execute(uri: uri, method: method, headers: jsonHeaders, body: payload)
                #expect(response.status == status, "\(uri): \(String(buffer: response.body))")
                let error = try #require(try object(response.body)["error"] as? [String: Any])
                let message = try #require(error["message"] as? String)
                #expect(message.contains(words), "\(message)")
            }
            try await expectError("/v1/completions", ByteBuffer(string: "{\"prompt\": "), .badRequest, "not valid JSON")
            try await expectError("/v1/completions", try body(["max_tokens": 4]), .badRequest, "prompt: required")
            try await expectError("/v1/completions", try body(["prompt": 3]), .badRequest, "prompt: expected a string")
            try await expectError("/v1/completions", try body(["prompt": "Hi", "max_tokens": 1_000_000_000]), .badRequest, "max_tokens")
            try await expectError("/v1/completions", try body(["prompt": "Hi", "model": "gpt-4"]), .badRequest, "unknown model")
            try await expectError("/v1/completions", try body(["prompt": "Hi", "temperature": 9]), .badRequest, "temperature")
            try await expectError("/v1/completions", try body(["prompt": "Hi", "n": 2]), .badRequest, "n: only 1")
            try await expectError("/v1/completions", try body(["prompt": String(repeating: "word ", count: 200)]), .badRequest, "context")
            try await expectError(
                "/v1/chat/completions", try body(["messages": [["role": "user", "content": "Hi"]]]),
                .badRequest, "chat template")
            var unknown = eiffel
            unknown["method"] = "magic"
            try await expectError("/v1/edits", try body(unknown), .badRequest, "unknown method")
            var noSubject = eiffel
            noSubject["prompt"] = "Paris is a city in"
            noSubject["subject"] = "Berlin"
            try await expectError("/v1/edits", try body(noSubject), .badRequest, "Berlin")
            var both = eiffel
            both["requests"] = [eiffel]
            try await expectError("/v1/edits", try body(both), .badRequest, "either requests or prompt")
            try await expectError("/v1/edits", try body(["method": "ft-m", "requests": [] as [Any]]), .badRequest, "requests: give 1 to")
            try await expectError("/v1/edits", try body(["method": "ft-m", "prompt": "{} is"]), .badRequest, "subject, target: required")
            var badHparams = eiffel
            badHparams["hparams"] = ["no_such_key": 1]
            try await expectError("/v1/edits", try body(badHparams), .badRequest, "no_such_key")
            try await expectError("/v1/completions", ByteBuffer(string: String(repeating: " ", count: 5000)), .contentTooLarge, "limit")
            try await expectError("/v1/nothing", nil, .notFound, "no route", method: .get)
            try await expectError("/v1/edits/e42", nil, .notFound, "e42", method: .delete)
            // Still serving.
            let ok = try await client.execute(uri: "/v1/models", method: .get)
            #expect(ok.status == .ok)
            #expect((try object(ok.body)["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["edited", "original"])
        }
    }

    @Test func anAPIKeyIsRequiredOnEveryRouteWhenSet() async throws {
        let app = EditingServer.application(host: try makeHost(), settings: settings(apiKey: "sesame"))
        try await app.test(.router) { client in
            let none = try await client.execute(uri: "/v1/models", method: .get)
            #expect(none.status == .unauthorized)
            #expect(String(buffer: none.body).contains("missing"))
            let wrong = try await client.execute(uri: "/v1/edits", method: .get, headers: [.authorization: "Bearer open"])
            #expect(wrong.status == .unauthorized)
            #expect(String(buffer: wrong.body).contains("wrong API key"))
            // The page and what it asks first load without a key, and tell it that one is needed.
            #expect(try await client.execute(uri: "/", method: .get).status == .ok)
            let info = try object(try await client.execute(uri: "/v1/info", method: .get).body)
            #expect(info["auth"] as? Bool == true)
            let right = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sesame"])
            #expect(right.status == .ok)
        }
    }

    @Test func thePlaygroundIsServedFromThePackage() async throws {
        let app = EditingServer.application(host: try makeHost(), settings: settings())
        try await app.test(.router) { client in
            for (path, type) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix(type) == true)
                #expect(response.body.readableBytes > 100)
            }
        }
    }

    @Test func stopStringsEndTheTextAndNoPartOfThemIsEmitted() {
        var matcher = StopMatcher(stop: ["\n\n", "END"])
        var out = ""
        for piece in ["Hello", " E", "N", "x and\n", "\nmore"] {
            let (text, stopped) = matcher.append(piece)
            out += text
            if stopped { break }
        }
        #expect(out == "Hello ENx and")
        var none = StopMatcher(stop: [])
        #expect(none.append("abc").0 == "abc")
        var tail = StopMatcher(stop: ["END"])
        #expect(tail.append("xEN") == ("x", false))
        #expect(tail.flush() == "EN")
    }
}
