import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What one run of the built `ibke` executable produced.
struct IBKEResult: CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    let stdout: String
    let stderr: String
    let timedOut: Bool

    /// Standard error split into lines (a final newline ends the last line, it adds none).
    var stderrLines: [Substring] {
        var lines = stderr.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    var description: String {
        "ibke \(arguments.joined(separator: " ")) → exit \(status)\(timedOut ? " (timed out)" : "")\n"
            + "stdout: \(stdout.debugDescription)\nstderr: \(stderr.debugDescription)"
    }
}

/// Runs the `ibke` executable that `swift build` / `swift test` put next to the test bundle.
enum IBKE {
    /// The build products folder: the parent of the test bundle (`IBKEPackageTests.xctest`).
    static let productsDirectory: URL = {
        #if os(macOS)
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL
        #else
        // On Linux the test bundle is an executable; /proc/self/exe is it, whatever runner started it.
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent()
        #endif
    }()

    static var executable: URL { productsDirectory.appendingPathComponent("ibke") }

    /// Runs `ibke arguments…` with `IBKE_HOME` pointing to an empty folder (so that no run can find,
    /// or fetch into, a real model cache), one BLAS thread and an 80-column terminal, and kills it
    /// after `timeout` seconds.
    static func run(
        _ arguments: [String], environment extra: [String: String] = [:], timeout: Double = 30,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> IBKEResult {
        try #require(
            FileManager.default.isExecutableFile(atPath: executable.path),
            "no ibke executable at \(executable.path); build the package first", sourceLocation: sourceLocation)
        let scratch = try TemporaryDirectory()
        let home = scratch.appending("home")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        var environment = ProcessInfo.processInfo.environment
        environment["IBKE_HOME"] = home.path
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["COLUMNS"] = "80"
        environment.merge(extra) { $1 }

        // Output goes to files, not pipes: a chatty child can never block on a full pipe.
        let outURL = scratch.appending("stdout")
        let errURL = scratch.appending("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        defer {
            try? out.close()
            try? err.close()
        }

        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        try process.run()
        var timedOut = false
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            finished.wait()
        }
        let result = IBKEResult(
            arguments: arguments, status: process.terminationStatus,
            stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
            stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self), timedOut: timedOut)
        #expect(!timedOut, "ibke \(arguments.joined(separator: " ")) ran longer than \(timeout) s", sourceLocation: sourceLocation)
        #expect(
            process.terminationReason == .exit, "ibke \(arguments.joined(separator: " ")) crashed: \(result)",
            sourceLocation: sourceLocation)
        return result
    }

    /// Runs `ibke` and requires exit status 0.
    @discardableResult
    static func succeed(
        _ arguments: [String], environment: [String: String] = [:],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> IBKEResult {
        let result = try run(arguments, environment: environment, sourceLocation: sourceLocation)
        try #require(result.status == 0, "\(result)", sourceLocation: sourceLocation)
        return result
    }
}

/// The committed model fixtures of ModelsTests, read in place (not copied into this target).
enum Fixtures {
    static let folder = ModelFixtures.folder

    static func model(_ name: String) -> URL { folder.appendingPathComponent(name) }

    /// tiny-llama converted to GGUF (F32/F16/Q8_0, gpt2 tokenizer) by Scripts/golden/make_tiny_gguf.py.
    static var tinyGGUF: URL { folder.appendingPathComponent("tiny-llama.gguf") }

    static let huggingFaceModels = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]

    /// The Hugging Face folders and the GGUF: the name of the reference file and the model path.
    static var allModels: [ModelFixture] {
        huggingFaceModels.map {
            ModelFixture(name: $0, path: model($0), reference: model($0).appendingPathComponent("reference.json"))
        } + [
            ModelFixture(
                name: "tiny-llama.gguf", path: tinyGGUF,
                reference: folder.appendingPathComponent("tiny-llama-gguf-reference.json"))
        ]
    }
}

struct ModelFixture: Sendable, CustomTestStringConvertible {
    let name: String
    let path: URL
    let reference: URL
    var testDescription: String { name }

    /// reference.json: token ids of the reference texts and PyTorch's greedy continuations.
    struct Reference: Decodable {
        struct Sequence: Decodable {
            let text: String?
            let input_ids: [Int]
            let greedy_ids: [Int]
        }
        let sequences: [Sequence]
    }

    func loadReference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: reference))
    }
}
