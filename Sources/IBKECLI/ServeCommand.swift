import ArgumentParser
import Editing
import Foundation
import Models
import Serving

/// `ibke serve`: the model behind an OpenAI-compatible API, edited live, with a playground.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP: OpenAI-compatible completions, live edits and a web playground.",
        discussion: """
            Example: ibke serve --state runs/server, then open http://127.0.0.1:8080/ or point an OpenAI client at \
            http://127.0.0.1:8080/v1. Requests name "model": "edited" (the default) or "original". With --state DIR every \
            acknowledged edit is journaled there and applied again when the server restarts. SIGTERM or Ctrl-C stops it \
            gracefully. Routes: Docs/server.md.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var statistics: StatisticsArguments
    @Option(help: "Address to bind (loopback by default; 0.0.0.0 for every interface).") var host = "127.0.0.1"
    @Option(help: "Port.") var port = 8080
    @Option(
        help: ArgumentHelp(
            "Require `Authorization: Bearer KEY` on every route (default: $IBKE_API_KEY when set).",
            valueName: "key"))
    var apiKey: String?
    @Option(
        help: ArgumentHelp(
            "Folder that keeps the acknowledged edits (a journal and one delta per edit).",
            valueName: "dir"))
    var state: String?
    @Option(
        help:
            "Editing method the playground starts with (as `ibke edit`: ft-m; rome, memit and alphaedit need statistics, see --stats-corpus). (default: ft-m)",
        transform: EditingMethod.init(parsing:))
    var defaultMethod = EditingMethod.ftM
    @Option(
        help: ArgumentHelp(
            "The trained editor of the ibke method (default: the committed one for a model of `ibke model list` that has one).",
            valueName: "file"))
    var ibkeEditor: String?
    @Option(
        help: ArgumentHelp(
            "The trained editor of the mend method (default: the committed one for a model of `ibke model list` that has one).",
            valueName: "file"))
    var mendEditor: String?

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
    }

    func run() throws {
        let loaded = try model.load()
        let moments = try statistics.secondMoments(for: loaded, bar: ProgressBar())
        let ibke = try CommittedEditors.file(.ibke, given: ibkeEditor, model: loaded)
        let mend = try CommittedEditors.file(.mend, given: mendEditor, model: loaded)
        let journal = state.map { EditJournal(directory: URL(fileURLWithPath: $0)) }
        let modelHost = try ModelHost(
            model: loaded, statistics: moments,
            editorFile: { method in
                switch method {
                case .ibke: ibke
                case .mend: mend
                default: nil
                }
            }, journal: journal)

        var settings = ServerSettings()
        settings.host = self.host
        settings.port = port
        settings.apiKey = apiKey ?? ProcessInfo.processInfo.environment["IBKE_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        settings.defaultMethod = defaultMethod
        settings.methods = EditingMethod.allCases.filter { !$0.isTrained || ($0 == .ibke ? ibke : mend) != nil }
        let restored = (try? awaitResult { try await modelHost.edits().count }) ?? 0
        if restored > 0 { log("restored \(restored) edit\(restored == 1 ? "" : "s") from \(state!)") }
        if settings.apiKey == nil && host != "127.0.0.1" && host != "localhost" && host != "::1" {
            log("warning: serving on \(host) without --api-key: anyone who reaches the port can edit the model")
        }

        log("serving \(loaded.url.lastPathComponent) on http://\(self.host):\(port)/ (playground at /, API at /v1)")
        let configured = settings
        try awaitResult { try await EditingServer.run(host: modelHost, settings: configured) }
    }
}

/// Runs async work from a synchronous command and waits for it (the main thread is not one of
/// the cooperative threads the work runs on).
private func awaitResult<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let semaphore = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, any Error>?
    Task {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        semaphore.signal()
    }
    semaphore.wait()
    return try result!.get()
}
