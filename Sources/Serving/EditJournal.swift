import Editing
import Foundation
import ModelFormats

/// One edit the host applied, as listed by `GET /v1/edits` and kept in the journal.
public struct EditRecord: Sendable, Codable, Equatable {
    public var id: String
    public var method: String
    /// The facts written, one for a single edit, several for a batch.
    public var requests: [Fact]
    /// Unix seconds.
    public var created: Int
    /// Seconds the editor took.
    public var seconds: Double

    public struct Fact: Sendable, Codable, Equatable {
        public var prompt: String
        public var subject: String
        public var target: String
    }
}

/// The edits a server acknowledged, on disk: `journal.json` (the model's SHA-256 and the
/// records, in the order applied) and one delta file per edit, `ID.safetensors`.
///
/// An edit is acknowledged only after its delta and then the journal that lists it have been
/// written atomically, so a server killed at any point comes back with exactly the
/// acknowledged edits: a delta that no journal lists is an edit that was never acknowledged,
/// and is removed at the next start.
public struct EditJournal: Sendable {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    private struct Contents: Codable {
        var model_sha256: String
        var next_id: Int
        var edits: [EditRecord]
    }

    private var journalURL: URL { directory.appendingPathComponent("journal.json") }

    func deltaURL(_ id: String) -> URL { directory.appendingPathComponent("\(id).safetensors") }

    /// The journaled edits with their deltas, and the next free edit number; none for a new
    /// folder. Unlisted delta files (an edit interrupted before it was acknowledged) are removed.
    ///
    /// - Throws: ``ServingError/journal(_:)`` for a journal of another model or a damaged one.
    func load(modelHash: String) throws -> (edits: [(EditRecord, WeightDelta)], nextID: Int) {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard FileManager.default.fileExists(atPath: journalURL.path) else { return ([], 1) }
        let contents: Contents
        do {
            contents = try JSONDecoder().decode(Contents.self, from: try MappedFile.contents(of: journalURL))
        } catch {
            throw ServingError.journal("\(journalURL.path): not a readable edit journal (\(error))")
        }
        guard contents.model_sha256 == modelHash else {
            throw ServingError.journal(
                "\(journalURL.path): the journal was written for the model with sha256 "
                    + "\(contents.model_sha256), not this one (\(modelHash)); use another state folder for this model")
        }
        let edits = try contents.edits.map { record in
            let delta = try WeightDelta.load(from: deltaURL(record.id))
            try delta.checkModel(hash: modelHash, source: deltaURL(record.id).lastPathComponent, allowUnverified: false)
            return (record, delta)
        }
        let listed = Set(contents.edits.map { "\($0.id).safetensors" })
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        where name.hasSuffix(".safetensors") && !listed.contains(name) {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
        return (edits, contents.next_id)
    }

    /// Writes a new edit's delta (before the journal that lists it).
    func saveDelta(_ delta: WeightDelta, id: String) throws {
        try delta.save(to: deltaURL(id))
    }

    /// Replaces the journal with `records` (atomically).
    func write(records: [EditRecord], nextID: Int, modelHash: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(Contents(model_sha256: modelHash, next_id: nextID, edits: records))
        try AtomicFile.write(data, to: journalURL) { ServingError.journal("\(journalURL.path): \($0)") }
    }

    /// Removes a reverted edit's delta (after the journal that no longer lists it).
    func removeDelta(id: String) {
        try? FileManager.default.removeItem(at: deltaURL(id))
    }
}
