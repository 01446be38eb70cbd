import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `ibke serve` as a process: journaled edits survive SIGKILL, SIGTERM stops it cleanly.
@Suite struct ServeCommandTests {
    /// A running `ibke serve` on the tiny GGUF.
    final class Server: @unchecked Sendable {
        let process = Process()
        let port: Int
        let base: String

        init(state: URL, log: URL) throws {
            port = Int.random(in: 20000...60000)
            base = "http://127.0.0.1:\(port)"
            process.executableURL = IBKE.executable
            process.arguments = [
                "serve", "--model", Fixtures.tinyGGUF.path, "--state", state.path, "--port", "\(port)",
                "--threads", "1", "--default-method", "ft-m",
            ]
            var environment = ProcessInfo.processInfo.environment
            environment["IBKE_HOME"] = state.deletingLastPathComponent().appendingPathComponent("home").path
            process.environment = environment
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            // Ready once it answers.
            for _ in 0..<200 {
                if (try? request("GET", "/v1/models").status) == 200 { return }
                Thread.sleep(forTimeInterval: 0.05)
            }
            process.terminate()
            throw ServeError("the server did not answer on port \(port): \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        }

        func request(_ method: String, _ path: String, _ body: [String: Any]? = nil) throws -> (status: Int, data: Data) {
            var request = URLRequest(url: URL(string: base + path)!)
            request.httpMethod = method
            request.timeoutInterval = 60
            if let body {
                request.httpBody = try JSONSerialization.data(withJSONObject: body)
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var result: Result<(Int, Data), any Error> = .failure(ServeError("no response"))
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error {
                    result = .failure(error)
                } else {
                    result = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
                }
                done.signal()
            }.resume()
            done.wait()
            return try result.get()
        }

        func edits() throws -> [String] {
            let object = try JSONSerialization.jsonObject(with: try request("GET", "/v1/edits").data) as? [String: Any]
            return (object?["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
        }

        func exported() throws -> Data {
            let response = try request("POST", "/v1/export", ["format": "gguf"])
            try #require(response.status == 200, "\(String(decoding: response.data, as: UTF8.self))")
            return response.data
        }

        func stop(_ signal: Int32) -> Int32 {
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    struct ServeError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static func edit(_ subject: String, _ target: String) -> [String: Any] {
        ["method": "ft-m", "prompt": "{} lives in", "subject": subject, "target": target]
    }

    @Test func acknowledgedEditsSurviveSIGKILLBitForBit() throws {
        let folder = try TemporaryDirectory()
        let state = folder.appending("state")
        let first = try Server(state: state, log: folder.appending("first.log"))
        let pristine = try first.exported()
        try #require(try first.request("POST", "/v1/edits", Self.edit("Alice", "the city")).status == 200)
        let acknowledged = try first.exported()
        #expect(acknowledged != pristine)

        // A second edit in flight when the server is killed: it is back only if it was acknowledged.
        let inFlight = Thread { _ = try? first.request("POST", "/v1/edits", Self.edit("Bob", "the sea")) }
        inFlight.start()
        Thread.sleep(forTimeInterval: Double.random(in: 0.01...0.2))
        #expect(first.stop(SIGKILL) == SIGKILL)

        let second = try Server(state: state, log: folder.appending("second.log"))
        let edits = try second.edits()
        #expect(edits == ["e1"] || edits == ["e1", "e2"], "\(edits)")
        if edits.count == 2 {
            try #require(try second.request("DELETE", "/v1/edits/e2").status == 200)
        }
        #expect(try second.exported() == acknowledged)
        try #require(try second.request("DELETE", "/v1/edits/e1").status == 200)
        #expect(try second.exported() == pristine)
        // SIGTERM: a graceful stop, exit status 0.
        #expect(second.stop(SIGTERM) == 0)
        let third = try Server(state: state, log: folder.appending("third.log"))
        #expect(try third.edits() == [])
        _ = third.stop(SIGTERM)
    }

    @Test func aJournalOfAnotherModelIsRefused() throws {
        let folder = try TemporaryDirectory()
        let state = folder.appending("state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        try Data(#"{"model_sha256": "0000", "next_id": 1, "edits": []}"#.utf8).write(to: state.appendingPathComponent("journal.json"))
        let result = try IBKE.run(["serve", "--model", Fixtures.tinyGGUF.path, "--state", state.path, "--port", "1"])
        #expect(result.status == 1)
        #expect(result.stderrLines.last?.contains("the journal was written for the model with sha256 0000") == true, "\(result)")
    }
}
