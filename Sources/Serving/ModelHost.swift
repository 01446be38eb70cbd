import Editing
import Foundation
import Models
import Tokenizers

/// Which weights a request reads: the model with every applied edit, or as loaded.
public enum ModelVariant: String, Sendable, CaseIterable {
    case edited, original
}

/// A failure the server reports to its client (`status` picks the HTTP code).
public enum ServingError: Error, CustomStringConvertible, Equatable {
    /// The request is wrong: a 400 with this message.
    case badRequest(String)
    /// An edit id that no applied edit has: a 404.
    case unknownEdit(String)
    /// The state folder cannot be read or written.
    case journal(String)

    public var description: String {
        switch self {
        case .badRequest(let message), .journal(let message): message
        case .unknownEdit(let id): "no applied edit has the id \(id)"
        }
    }
}

/// An edit to make: what `POST /v1/edits` carries.
public struct EditSubmission: Sendable {
    public var method: EditingMethod
    /// One request, or a batch edited in one editor call (MEMIT's and AlphaEdit's batch
    /// editing; the others edit the requests one after another) and kept as one edit.
    public var requests: [EditRequest]
    /// Hyperparameter overrides, as the bytes of a JSON object (the keys of the method's
    /// hyperparameter file).
    public var hyperparameters: Data?

    public init(method: EditingMethod, requests: [EditRequest], hyperparameters: Data? = nil) {
        self.method = method
        self.requests = requests
        self.hyperparameters = hyperparameters
    }

    public init(method: EditingMethod, request: EditRequest, hyperparameters: Data? = nil) {
        self.init(method: method, requests: [request], hyperparameters: hyperparameters)
    }
}

extension EditSubmission {
    /// The most requests one batch may hold.
    public static let batchLimit = 256
}

/// The model's behaviour on an edit's prompt at one moment.
public struct EditProbe: Sendable, Encodable {
    public struct Candidate: Sendable, Encodable {
        public var token: String
        public var probability: Double
    }
    public var targetProbability: Double
    public var originalProbability: Double
    public var top: [Candidate]
    public var generation: String

    enum CodingKeys: String, CodingKey {
        case targetProbability = "target_probability"
        case originalProbability = "original_probability"
        case top, generation
    }
}

/// What an edit did: the report `ibke edit` prints, as data.
public struct EditReport: Sendable {
    public var record: EditRecord
    /// One per request, in order.
    public var outcomes: [Outcome]

    public struct Outcome: Sendable {
        /// The unedited model's greedy answer, as many tokens as the target.
        public var originalAnswer: String
        public var before: EditProbe
        public var after: EditProbe
    }

    /// The outcome of a single edit (the first request of a batch).
    public var before: EditProbe { outcomes[0].before }
    public var after: EditProbe { outcomes[0].after }
}

/// How a generation ended.
public enum FinishReason: String, Sendable, Encodable {
    /// A stop token or stop string.
    case stop
    /// `max_tokens` (or the context) ran out.
    case length
}

/// A piece of a streamed generation.
public enum GenerationEvent: Sendable, Equatable {
    case text(String)
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
}

/// Owns a loaded model for a server: edits, reverts and generations run one at a time on one
/// serial queue, so a generation sees one model state, before or after an edit, never half of
/// one, and the editors, which write the weights, never race a reader. The queue is a thread of
/// its own: long model work does not hold up Swift's cooperative threads, which serve the
/// HTTP connections.
/// `@unchecked Sendable`: `applied` and `nextID` are read and written only on `queue`, and
/// `reportTokens` is set before the host is shared; the rest is immutable after init.
public final class ModelHost: @unchecked Sendable {
    public let model: LanguageModel
    public let modelHash: String
    private let queue = DispatchQueue(label: "ibke.model-host", qos: .userInitiated)
    private let statistics: SecondMoments?
    private let editorFile: @Sendable (EditingMethod) throws -> URL?
    private let journal: EditJournal?
    private var applied: [(record: EditRecord, handle: AppliedDelta)] = []
    private var nextID = 1

    /// The `--state` folder, when the host keeps a journal.
    public var stateDirectory: URL? { journal?.directory }

    /// Tokens of the greedy generations in edit reports.
    public var reportTokens = 24

    /// - Parameters:
    ///   - statistics: the second moments ROME, MEMIT and AlphaEdit read (nil: those methods fail).
    ///   - editorFile: the trained editor file of `ibke`/`mend` (nil: none).
    ///   - journal: where acknowledged edits are kept; the edits it holds are applied now, in order.
    /// - Throws: ``ServingError/journal(_:)`` for a journal of another model, or what loading
    ///   and applying its deltas throws.
    public init(
        model: LanguageModel, statistics: SecondMoments?,
        editorFile: @escaping @Sendable (EditingMethod) throws -> URL?, journal: EditJournal?
    ) throws {
        self.model = model
        self.modelHash = try model.contentHash()
        self.statistics = statistics
        self.editorFile = editorFile
        self.journal = journal
        if let journal {
            let (edits, nextID) = try journal.load(modelHash: modelHash)
            for (record, delta) in edits {
                applied.append((record, try model.transformer.apply(delta, source: record.id)))
            }
            self.nextID = max(nextID, 1)
        }
    }

    /// Runs `body` on the model's queue. A cancelled caller (a server shutting down) stops
    /// waiting at once with `CancellationError`; `body` still runs to its end on the queue,
    /// since the model must never be left half edited.
    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let waiter = Waiter<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiter.wait(continuation)
                queue.async { waiter.resume(with: Result { try body() }) }
            }
        } onCancel: {
            waiter.resume(with: .failure(CancellationError()))
        }
    }

    /// Runs `body` with the weights of `variant` (on the queue): for the original, every edit is
    /// reverted for the call and re-applied after it, which gives the same bits again.
    private func with<T>(_ variant: ModelVariant, _ body: () throws -> T) throws -> T {
        guard variant == .original, !applied.isEmpty else { return try body() }
        for edit in applied.reversed() { edit.handle.revert() }
        let result = Result { try body() }
        // The deltas were applied to these same weights before, so they apply again.
        for i in applied.indices {
            applied[i].handle = try model.transformer.apply(applied[i].handle.delta, source: applied[i].record.id)
        }
        return try result.get()
    }

    // MARK: Edits

    /// The applied edits, in order.
    public func edits() async throws -> [EditRecord] {
        try await run { self.applied.map(\.record) }
    }

    /// Makes an edit, journals it, and reports the model's behaviour before and after.
    ///
    /// - Throws: ``ServingError/badRequest(_:)`` for a request the model cannot take (a subject
    ///   missing from the prompt, bad hyperparameters), or what the editor throws.
    public func edit(_ submission: EditSubmission) async throws -> EditReport {
        try await run { try self.editNow(submission) }
    }

    private func editNow(_ submission: EditSubmission) throws -> EditReport {
        guard (1...EditSubmission.batchLimit).contains(submission.requests.count) else {
            throw ServingError.badRequest("requests: give 1 to \(EditSubmission.batchLimit) requests")
        }
        var requests: [PreparedRequest] = []
        for (i, request) in submission.requests.enumerated() {
            do {
                requests.append(try request.prepared(for: model))
            } catch let error as EditRequestError {
                throw ServingError.badRequest((submission.requests.count > 1 ? "requests[\(i)]: " : "") + error.description)
            }
        }
        let editor = try makeEditor(submission)
        if let statistics, !statistics.expectedLayers.isEmpty { try statistics.prepare(layers: statistics.expectedLayers) }

        let originals = try model.greedyContinuations(
            requests.map(\.prompt), maxTokens: requests.map(\.target.count).max()!,
            stopTokens: model.tokenizer.stopTokenIDs
        )
        .enumerated().map { Array($1.prefix(requests[$0].target.count)) }
        let before = try zip(requests, originals).map { try probe($0, original: $1) }
        let start = Date()
        var delta = try editor.edit(requests, in: model)
        let seconds = Date().timeIntervalSince(start)
        delta.metadata["ibke.model_sha256"] = modelHash
        delta.metadata["ibke.method"] = submission.method.rawValue
        let id = "e\(nextID)"
        let record = EditRecord(
            id: id, method: submission.method.rawValue,
            requests: submission.requests.map { .init(prompt: $0.prompt, subject: $0.subject, target: $0.targetNew) },
            created: Int(Date().timeIntervalSince1970), seconds: seconds)
        let handle = try model.transformer.apply(delta, source: id)
        do {
            if let journal {
                try journal.saveDelta(delta, id: id)
                try journal.write(records: applied.map(\.record) + [record], nextID: nextID + 1, modelHash: modelHash)
            }
        } catch {
            handle.revert()
            journal?.removeDelta(id: id)
            throw error
        }
        applied.append((record, handle))
        nextID += 1
        let outcomes = try requests.indices.map { i in
            EditReport.Outcome(
                originalAnswer: model.tokenizer.decode(originals[i], skipSpecialTokens: true),
                before: before[i], after: try probe(requests[i], original: originals[i]))
        }
        return EditReport(record: record, outcomes: outcomes)
    }

    private func makeEditor(_ submission: EditSubmission) throws -> any Editor {
        var file: URL?
        if let data = submission.hyperparameters {
            // The editors read hyperparameters from a file (JSON or YAML), as `--hparams` gives them.
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-hparams-\(UUID().uuidString).json")
            try data.write(to: url)
            file = url
        }
        defer { if let file { try? FileManager.default.removeItem(at: file) } }
        do {
            return try EditorRegistry.make(
                submission.method, model: model, hyperparameters: file,
                statistics: statistics, editorFile: try editorFile(submission.method))
        } catch let error as EditorError {
            throw ServingError.badRequest("hparams: \(error)".replacingOccurrences(of: file?.path ?? "\u{0}", with: "hparams"))
        }
    }

    private func probe(_ request: PreparedRequest, original: [Int]) throws -> EditProbe {
        let scores = try model.score([
            ContinuationRequest(prompt: request.prompt, target: request.target),
            ContinuationRequest(prompt: request.prompt, target: original.isEmpty ? request.target : original),
        ])
        let top = try model.topNextTokens(request.prompt, k: 5).map {
            EditProbe.Candidate(token: model.tokenizer.decode([$0.id], skipSpecialTokens: false), probability: exp(Double($0.logProb)))
        }
        let generation = try model.greedyContinuations(
            [request.prompt], maxTokens: reportTokens,
            stopTokens: model.tokenizer.stopTokenIDs)[0]
        return EditProbe(
            targetProbability: exp(Double(scores[0].totalLogProb)),
            originalProbability: exp(Double(scores[1].totalLogProb)), top: top,
            generation: request.request.text + model.tokenizer.decode(generation, skipSpecialTokens: true))
    }

    /// Reverts one edit, bit for bit, whatever was applied after it: the later edits are
    /// reverted too, then applied again without it.
    public func revert(id: String) async throws {
        try await run {
            guard let index = self.applied.firstIndex(where: { $0.record.id == id }) else { throw ServingError.unknownEdit(id) }
            let remaining = self.applied.enumerated().filter { $0.offset != index }.map(\.element.record)
            try self.journal?.write(records: remaining, nextID: self.nextID, modelHash: self.modelHash)
            let later = self.applied[(index + 1)...].map { ($0.record, $0.handle.delta) }
            for edit in self.applied[index...].reversed() { edit.handle.revert() }
            self.applied.removeSubrange(index...)
            for (record, delta) in later {
                self.applied.append((record, try self.model.transformer.apply(delta, source: record.id)))
            }
            self.journal?.removeDelta(id: id)
        }
    }

    // MARK: Generation

    /// A prompt's tokens as the model sees it (the tokenizer is safe to use from any thread).
    public func encode(_ text: String) -> [Int] { model.encode(text) }

    /// Streams a continuation of the tokens `prompt` from `variant`'s weights. The whole generation runs
    /// as one job on the model's queue (one consistent model state); it stops early when the
    /// stream's consumer goes away.
    ///
    /// - Parameter stop: strings that end the generation (not included in the text).
    public func generate(
        _ prompt: [Int], variant: ModelVariant, options: GenerationOptions,
        stop: [String] = []
    ) -> AsyncThrowingStream<GenerationEvent, any Error> {
        AsyncThrowingStream { continuation in
            let cancelled = CancelFlag()
            continuation.onTermination = { _ in cancelled.set() }
            queue.async {
                do {
                    try self.with(variant) {
                        try self.generateNow(prompt, options: options, stop: stop, cancelled: cancelled) {
                            continuation.yield($0)
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
    }

    private func generateNow(
        _ ids: [Int], options: GenerationOptions, stop: [String], cancelled: CancelFlag,
        emit: (GenerationEvent) -> Void
    ) throws {
        guard !ids.isEmpty else { throw ServingError.badRequest("prompt: the prompt is empty") }
        guard ids.count < model.config.contextLength else {
            throw ServingError.badRequest("prompt: \(ids.count) tokens, more than the model's context of \(model.config.contextLength)")
        }
        var options = options
        options.stopTokens.formUnion(model.tokenizer.stopTokenIDs)
        var detokenizer = StreamingDetokenizer(tokenizer: model.tokenizer, skipSpecialTokens: true)
        var matcher = StopMatcher(stop: stop)
        var reason = FinishReason.length
        var count = 0
        try model.generate(prompt: ids, options: options) { token in
            count += 1
            if options.stopTokens.contains(token) {
                reason = .stop
                return false
            }
            let (text, stopped) = matcher.append(detokenizer.append(token))
            if !text.isEmpty { emit(.text(text)) }
            if stopped { reason = .stop }
            return !stopped && !cancelled.isSet
        }
        if reason == .length {
            let (text, _) = matcher.append(detokenizer.finish())
            let tail = text + matcher.flush()
            if !tail.isEmpty { emit(.text(tail)) }
        }
        emit(.finished(reason, promptTokens: ids.count, completionTokens: count))
    }

    /// Greedy continuations of `prompts` from both variants, for locality probes.
    public func compare(_ prompts: [String], maxTokens: Int) async throws -> [(original: String, edited: String)] {
        try await run {
            let ids = prompts.map { self.model.encode($0) }
            if let empty = ids.firstIndex(where: \.isEmpty) { throw ServingError.badRequest("prompts[\(empty)]: empty") }
            let decode = { (outputs: [[Int]]) in outputs.map { self.model.tokenizer.decode($0, skipSpecialTokens: true) } }
            let stops = self.model.tokenizer.stopTokenIDs
            let edited = decode(try self.model.greedyContinuations(ids, maxTokens: maxTokens, stopTokens: stops))
            let original = try self.with(.original) {
                decode(try self.model.greedyContinuations(ids, maxTokens: maxTokens, stopTokens: stops))
            }
            return Array(zip(original, edited))
        }
    }

    /// Runs `body` with the edited model on the model's queue (exports read a consistent state).
    public func withEditedModel<T: Sendable>(
        _ body: @escaping @Sendable (LanguageModel, [(record: EditRecord, delta: WeightDelta)]) throws -> T
    ) async throws -> T {
        try await run { try body(self.model, self.applied.map { ($0.record, $0.handle.delta) }) }
    }
}

/// A continuation resumed once, by whichever comes first: the result or a cancellation
/// (which may come before the continuation exists).
/// `@unchecked Sendable`: `continuation` and `early` are touched only under `lock`.
private final class Waiter<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var early: Result<T, any Error>?
    private var done = false

    func wait(_ continuation: CheckedContinuation<T, any Error>) {
        lock.lock()
        if let early {
            lock.unlock()
            continuation.resume(with: early)
            return
        }
        self.continuation = continuation
        lock.unlock()
    }

    func resume(with result: Result<T, any Error>) {
        lock.lock()
        guard !done else {
            lock.unlock()
            return
        }
        done = true
        guard let continuation else {
            early = result
            lock.unlock()
            return
        }
        self.continuation = nil
        lock.unlock()
        continuation.resume(with: result)
    }
}

/// Set once from any thread, read from the model's queue.
/// `@unchecked Sendable`: `value` is touched only under `lock`.
private final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Finds stop strings in streamed text, holding back a tail that could still be the start of
/// one, so that no part of a stop string is ever emitted.
struct StopMatcher {
    let stop: [String]
    private var pending = ""

    init(stop: [String]) {
        self.stop = stop.filter { !$0.isEmpty }
    }

    /// Adds text; returns what can be emitted, and whether a stop string was found (the text
    /// before it is then all that is returned).
    mutating func append(_ text: String) -> (String, Bool) {
        pending += text
        guard !stop.isEmpty else {
            defer { pending = "" }
            return (pending, false)
        }
        if let hit = stop.compactMap({ pending.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
            defer { pending = "" }
            return (String(pending[..<hit.lowerBound]), true)
        }
        // Keep the longest suffix that is a prefix of some stop string.
        var keep = 0
        for s in stop {
            for n in stride(from: min(s.count - 1, pending.count), to: 0, by: -1)
            where n > keep && pending.hasSuffix(String(s.prefix(n))) {
                keep = n
                break
            }
        }
        let cut = pending.index(pending.endIndex, offsetBy: -keep)
        defer { pending = String(pending[cut...]) }
        return (String(pending[..<cut]), false)
    }

    /// The held-back text, at the end of a generation.
    mutating func flush() -> String {
        defer { pending = "" }
        return pending
    }
}
