import Editing
import Foundation
import Hummingbird
import Logging
import Models
import NIOCore
import ServiceLifecycle

/// How `ibke serve` listens and what it offers.
public struct ServerSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// When set, every route wants `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// Larger request bodies get a 413.
    public var maxBodyBytes = 1 << 20
    /// The methods `POST /v1/edits` accepts.
    public var methods: [EditingMethod] = EditingMethod.allCases
    public var defaultMethod: EditingMethod = .rome
    /// Hummingbird's own log (standard error); requests are logged at `.debug`.
    public var logLevel: Logger.Level = .warning

    public init() {}
}

/// The HTTP API of a ``ModelHost``: OpenAI-compatible completions, the editing routes and the
/// playground page, on Hummingbird.
public enum EditingServer {
    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: no new connections, and
    /// requests in flight get `shutdownGrace` to finish. After that they are cancelled: an edit
    /// still running is not acknowledged (its client gets no answer), so the journal keeps
    /// exactly the edits acknowledged so far, or this one too if it completes first.
    public static func run(host: ModelHost, settings: ServerSettings, shutdownGrace: Duration = .seconds(10)) async throws {
        let app = application(host: host, settings: settings)
        var configuration = ServiceGroupConfiguration(
            services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: app.logger)
        configuration.maximumGracefulShutdownDuration = shutdownGrace
        try await ServiceGroup(configuration: configuration).run()
    }

    /// The application, for tests and embedding; ``run(host:settings:shutdownGrace:)`` serves it.
    public static func application(host: ModelHost, settings: ServerSettings) -> some ApplicationProtocol {
        var logger = Logger(label: "ibke.serve")
        logger.logLevel = settings.logLevel
        let router = Router()
        router.add(middleware: ErrorMiddleware())
        if let key = settings.apiKey { router.add(middleware: BearerMiddleware(key: key)) }
        Routes(host: host, settings: settings).register(on: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "ibke"),
            logger: logger)
    }
}

/// The routes, with what they share.
private struct Routes: Sendable {
    let host: ModelHost
    let settings: ServerSettings
    let started = Int(Date().timeIntervalSince1970)

    struct ExportResult: Encodable {
        var format: String
        var path: String
        var rewritten_tensors: [String]
    }

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in try Playground.response("index.html") }
        router.get("/app.js") { _, _ in try Playground.response("app.js") }
        router.get("/style.css") { _, _ in try Playground.response("style.css") }

        router.get("/v1/models") { _, _ in
            try json(ModelList(data: ModelVariant.allCases.map { .init(id: $0.rawValue, created: started) }))
        }
        router.get("/v1/info") { _, _ in
            try json(
                Info(
                    model: host.model.url.lastPathComponent, methods: settings.methods.map(\.rawValue),
                    default_method: settings.defaultMethod.rawValue, auth: settings.apiKey != nil,
                    edits: try await host.edits().count))
        }
        router.post("/v1/completions") { request, _ in
            let body = try await decode(CompletionRequest.self, request)
            return try complete(prompt: body.prompt, sampling: body.sampling, chat: false)
        }
        router.post("/v1/chat/completions") { request, _ in
            let body = try await decode(ChatRequest.self, request)
            guard !body.messages.isEmpty else { throw ServingError.badRequest("messages: at least one message") }
            guard let source = host.model.tokenizer.chatTemplate, let template = ChatTemplate(template: source) else {
                throw ServingError.badRequest(
                    "\(host.model.url.lastPathComponent) has no chat template this server knows; use /v1/completions")
            }
            for (i, m) in body.messages.enumerated() where !["system", "user", "assistant"].contains(m.role) {
                throw ServingError.badRequest("messages[\(i)].role: \(m.role.debugDescription) is not system, user or assistant")
            }
            let prompt = template.render(body.messages.map { .init(role: $0.role, content: $0.content) })
            return try complete(prompt: prompt, sampling: body.sampling, chat: true)
        }

        router.post("/v1/edits") { request, _ in
            var request = request
            let data = try await bodyData(&request)
            let body = try decode(EditBody.self, data)
            let methodName = body.method ?? settings.defaultMethod.rawValue
            guard let method = EditingMethod(name: methodName), settings.methods.contains(method) else {
                throw ServingError.badRequest(
                    "method: unknown method \(methodName.debugDescription) "
                        + "(this server has \(settings.methods.map(\.rawValue).joined(separator: ", ")))")
            }
            let submission = EditSubmission(
                method: method,
                requests: try body.facts().map { EditRequest(prompt: $0.prompt, subject: $0.subject, targetNew: $0.target) },
                hyperparameters: try hyperparameters(data))
            return try json(EditResponse(try await host.edit(submission)))
        }
        router.get("/v1/edits") { _, _ in try json(EditList(data: try await host.edits())) }
        router.delete("/v1/edits/:id") { _, context in
            let id = try context.parameters.require("id")
            try await host.revert(id: id)
            return try json(Deleted(id: id))
        }
        router.post("/v1/evaluate") { request, _ in
            let body = try await decode(EvaluateBody.self, request)
            guard !body.prompts.isEmpty, body.prompts.count <= 64 else {
                throw ServingError.badRequest("prompts: give 1 to 64 prompts")
            }
            let maxTokens = body.max_tokens ?? 16
            guard (1...256).contains(maxTokens) else { throw ServingError.badRequest("max_tokens: must be 1 to 256") }
            let outputs = try await host.compare(body.prompts, maxTokens: maxTokens)
            return try json(
                EvaluateResponse(
                    results: zip(body.prompts, outputs).map {
                        .init(prompt: $0, original: $1.original, edited: $1.edited)
                    }))
        }
        router.post("/v1/export") { request, _ in try await export(try await decode(ExportBody.self, request)) }
    }

    // MARK: Export

    /// `POST /v1/export`: the edited model as a GGUF download, or a Hugging Face folder written
    /// under the state folder's `exports/` (a client never names a path outside it).
    private func export(_ body: ExportBody) async throws -> Response {
        guard let precision = ModelExport.Precision(rawValue: body.dtype ?? "f32") else {
            throw ServingError.badRequest("dtype: must be f32, f16 or source (the source tensors' types, GGUF only)")
        }
        switch body.format {
        case "gguf":
            guard host.model.format == .gguf else {
                throw ServingError.badRequest("format: the model was loaded from a Hugging Face folder; export it as hf")
            }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-export-\(UUID().uuidString).gguf")
            defer { try? FileManager.default.removeItem(at: file) }
            try await host.withEditedModel { model, _ in _ = try ModelExport.write(model, to: file, precision: precision) }
            let data = try Data(contentsOf: file, options: .alwaysMapped)
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/octet-stream",
                    .contentDisposition: "attachment; filename=\"edited.gguf\"",
                ],
                body: .init(byteBuffer: ByteBuffer(bytes: data)))
        case "hf":
            let folder = try exportFolder(body.path ?? "edited-hf")
            let result = try await host.withEditedModel { model, _ in
                try ModelExport.write(model, to: folder, precision: precision, overwrite: true)
            }
            return try json(ExportResult(format: "hf", path: folder.path, rewritten_tensors: result.rewrittenTensors))
        case "lora":
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-export-\(UUID().uuidString).gguf")
            defer { try? FileManager.default.removeItem(at: file) }
            try await host.withEditedModel { model, edits in
                guard !edits.isEmpty else { throw ServingError.badRequest("format: there are no edits to export as an adapter") }
                try AdapterExport.write(edits.map(\.delta), of: model, to: file, format: .lora)
            }
            let data = try Data(contentsOf: file, options: .alwaysMapped)
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/octet-stream",
                    .contentDisposition: "attachment; filename=\"edits-lora.gguf\"",
                ],
                body: .init(byteBuffer: ByteBuffer(bytes: data)))
        case "peft":
            let folder = try exportFolder(body.path ?? "edits-peft")
            let result = try await host.withEditedModel { model, edits in
                guard !edits.isEmpty else { throw ServingError.badRequest("format: there are no edits to export as an adapter") }
                return try AdapterExport.write(edits.map(\.delta), of: model, to: folder, format: .peft, overwrite: true)
            }
            return try json(ExportResult(format: "peft", path: folder.path, rewritten_tensors: result.modules.map(\.tensor)))
        default:
            throw ServingError.badRequest("format: \(body.format.debugDescription) is not gguf, hf, lora or peft")
        }
    }

    /// `<state>/exports/NAME`: folders are written only there, under a plain name.
    private func exportFolder(_ name: String) throws -> URL {
        guard let state = host.stateDirectory else {
            throw ServingError.badRequest("format: folders are written under the server's state folder, and this server has none")
        }
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw ServingError.badRequest("path: a folder name (no slashes) under the state folder's exports/")
        }
        let folder = state.appendingPathComponent("exports").appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder.deletingLastPathComponent(), withIntermediateDirectories: true)
        return folder
    }

    // MARK: Completions

    private func complete(prompt: String, sampling: SamplingFields, chat: Bool) throws -> Response {
        let (variant, options, stop) = try sampling.options(contextLength: host.model.config.contextLength)
        // Checked before the status line goes out: a streamed response cannot turn into a 400.
        let ids = host.encode(prompt)
        let tokens = ids.count
        guard tokens > 0 else {
            throw ServingError.badRequest(chat ? "messages: the conversation is empty" : "prompt: the prompt is empty")
        }
        guard tokens < host.model.config.contextLength else {
            throw ServingError.badRequest(
                "\(chat ? "messages" : "prompt"): \(tokens) tokens, more than the model's context of \(host.model.config.contextLength)")
        }
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased()
        let created = Int(Date().timeIntervalSince1970)
        let model = variant.rawValue
        let events = host.generate(ids, variant: variant, options: options, stop: stop)

        guard sampling.stream == true else {
            // Not streamed: wait for the whole text. Errors before the first event are the client's.
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody { writer in
                    var text = ""
                    var finish = FinishReason.length
                    var usage = Usage(prompt_tokens: 0, completion_tokens: 0, total_tokens: 0)
                    for try await event in events {
                        switch event {
                        case .text(let piece): text += piece
                        case .finished(let reason, let p, let c):
                            finish = reason
                            usage = Usage(prompt_tokens: p, completion_tokens: c, total_tokens: p + c)
                        }
                    }
                    let data: Data =
                        chat
                        ? try encodeJSON(
                            ChatResponse(
                                id: id, object: "chat.completion", created: created, model: model,
                                choices: [.init(message: .init(role: "assistant", content: text), finish_reason: finish)],
                                usage: usage))
                        : try encodeJSON(
                            CompletionResponse(
                                id: id, created: created, model: model,
                                choices: [.init(text: text, finish_reason: finish)], usage: usage))
                    try await writer.write(ByteBuffer(bytes: data))
                    try await writer.finish(nil)
                })
        }

        // Server-sent events, one chunk per piece of text, then the finish reason and [DONE].
        @Sendable func chunk(_ text: String?, role: String? = nil, finish: FinishReason? = nil) throws -> ByteBuffer {
            let data: Data =
                chat
                ? try encodeJSON(
                    ChatResponse(
                        id: id, object: "chat.completion.chunk", created: created, model: model,
                        choices: [.init(delta: .init(role: role, content: text), finish_reason: finish)]))
                : try encodeJSON(
                    CompletionResponse(
                        id: id, created: created, model: model,
                        choices: [.init(text: text ?? "", finish_reason: finish)]))
            return ByteBuffer(bytes: Data("data: ".utf8) + data + Data("\n\n".utf8))
        }
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                do {
                    if chat { try await writer.write(try chunk("", role: "assistant")) }
                    for try await event in events {
                        switch event {
                        case .text(let piece): try await writer.write(try chunk(piece))
                        case .finished(let reason, _, _): try await writer.write(try chunk(chat ? nil : "", finish: reason))
                        }
                    }
                } catch {
                    // The status line is gone already: the error travels as an event.
                    let body = ErrorBody(error: .init(message: "\(error)", type: "server_error", code: nil))
                    try await writer.write(ByteBuffer(bytes: Data("data: ".utf8) + (try encodeJSON(body)) + Data("\n\n".utf8)))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            })
    }

    // MARK: Bodies

    private func bodyData(_ request: inout Request) async throws -> Data {
        do {
            let buffer = try await request.collectBody(upTo: settings.maxBodyBytes)
            return Data(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw RequestTooLarge(limit: settings.maxBodyBytes)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        var request = request
        return try decode(type, try await bodyData(&request))
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw ServingError.badRequest(describe(error))
        }
    }

    /// `hparams` of an edit body, re-encoded as a JSON object, or nil.
    private func hyperparameters(_ data: Data) throws -> Data? {
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any], let h = object["hparams"],
            !(h is NSNull)
        else { return nil }
        guard h is [String: Any] else { throw ServingError.badRequest("hparams: expected an object of hyperparameters") }
        return try JSONSerialization.data(withJSONObject: h)
    }
}

/// A body over the size limit.
struct RequestTooLarge: Error {
    let limit: Int
}

/// What a JSON decoding failure says, naming the field.
func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let names = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        return names.isEmpty ? "body" : names.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }
    switch error {
    case .keyNotFound(let key, let context):
        let parent = path(context)
        return "\(parent == "body" ? "" : parent + ".")\(key.stringValue): required"
    case .typeMismatch(let type, let context): return "\(path(context)): expected \(jsonKind(type))"
    case .valueNotFound(let type, let context): return "\(path(context)): expected \(jsonKind(type)), got null"
    case .dataCorrupted(let context):
        return context.codingPath.isEmpty ? "body: not valid JSON" : "\(path(context)): \(context.debugDescription)"
    @unknown default: return "body: \(error)"
    }
}

private func jsonKind(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Int.Type, is Double.Type: "a number"
    case is Bool.Type: "true or false"
    default: String(describing: type).hasPrefix("Array") ? "an array" : "an object"
    }
}

func encodeJSON<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    return try encoder.encode(value)
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encodeJSON(value))))
}

/// Every failure becomes an OpenAI-style JSON error: the client's mistakes 4xx with what was
/// wrong, anything else a 500; the server goes on serving.
private struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ServingError {
            switch error {
            case .badRequest(let message): return try failure(.badRequest, message, type: "invalid_request_error")
            case .unknownEdit: return try failure(.notFound, error.description, type: "invalid_request_error")
            case .journal(let message): return try failure(.internalServerError, message, type: "server_error")
            }
        } catch let error as RequestTooLarge {
            return try failure(.contentTooLarge, "body: larger than the limit of \(error.limit) bytes", type: "invalid_request_error")
        } catch let error as HTTPError {
            let message =
                error.body ?? (error.status == .notFound ? "no route \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return try failure(error.status, message, type: "invalid_request_error")
        } catch let error as EditRequestError {
            return try failure(.badRequest, error.description, type: "invalid_request_error")
        } catch {
            return try failure(.internalServerError, "\(error)", type: "server_error")
        }
    }

    private func failure(_ status: HTTPResponse.Status, _ message: String, type: String) throws -> Response {
        try json(ErrorBody(error: .init(message: message, type: type, code: nil)), status: status)
    }
}

/// `--api-key`: every route wants `Authorization: Bearer KEY` (compared in constant time).
private struct BearerMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let key: String
    static let open: Set<String> = ["/", "/app.js", "/style.css", "/v1/info"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The playground's files and what it asks first load without a key (a browser opening
        // the page sends none); the page then asks for the key and sends it on every call.
        if request.method == .get && Self.open.contains(request.uri.path) { return try await next(request, context) }
        let given = request.headers[.authorization] ?? ""
        let expected = "Bearer " + key
        guard given.utf8.count == expected.utf8.count,
            zip(given.utf8, expected.utf8).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0
        else {
            throw HTTPError(.unauthorized, message: given.isEmpty ? "missing Authorization: Bearer API key" : "wrong API key")
        }
        return try await next(request, context)
    }
}

/// The playground's files, compiled into the binary (`PackageResources`).
private enum Playground {
    static let files: [String: (bytes: [UInt8], type: String)] = [
        "index.html": (PackageResources.index_html, "text/html; charset=utf-8"),
        "app.js": (PackageResources.app_js, "text/javascript; charset=utf-8"),
        "style.css": (PackageResources.style_css, "text/css; charset=utf-8"),
    ]

    static func response(_ name: String) throws -> Response {
        guard let file = files[name] else { throw HTTPError(.notFound, message: "no playground file \(name)") }
        return Response(status: .ok, headers: [.contentType: file.type], body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }
}
