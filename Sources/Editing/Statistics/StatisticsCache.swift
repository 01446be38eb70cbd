import Foundation
import ModelFormats
import TensorCore

/// Second-moment matrices on disk: one safetensors file per layer (a later run that needs one
/// layer of an earlier multi-layer run reuses it), named by ``StatisticsKey/fileName``, with
/// the key and provenance in the header (`ibke stats`'s `$IBKE_HOME/cache/stats`).
public struct StatisticsCache: Sendable {
    public let directory: URL
    /// Recorded in each file written (`ibke.version`).
    public let ibkeVersion: String

    /// Marks a statistics file (`ibke.format`).
    public static let format = "ibke-stats-1"
    /// Name of the matrix in the file (the reference's `mom2`).
    public static let tensorName = "mom2"

    public init(directory: URL, ibkeVersion: String) {
        self.directory = directory
        self.ibkeVersion = ibkeVersion
    }

    public func url(for key: StatisticsKey) -> URL { directory.appendingPathComponent(key.fileName) }

    /// The cached matrix for `key`, or nil when there is no file.
    ///
    /// - Throws: ``StatisticsError`` when the file holds statistics of another key (never
    ///   silently reused) or is not a statistics file; `SafetensorsError` when it is damaged.
    public func load(_ key: StatisticsKey) throws -> SecondMoment? {
        let url = url(for: key)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try Self.read(url, expecting: key)
    }

    /// Writes `moment` (atomically) and returns its file.
    @discardableResult
    public func store(_ moment: SecondMoment) throws -> URL {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw StatisticsError.unreadable(file: directory.path, reason: "cannot create the folder: \(error.localizedDescription)")
        }
        var metadata = moment.provenance
        for (name, value) in moment.key.fields { metadata[name] = value }
        metadata["ibke.format"] = Self.format
        metadata["ibke.token_count"] = String(moment.tokenCount)
        metadata["ibke.window_count"] = String(moment.windowCount)
        metadata["ibke.statistic"] = "uncentred second moment E[k kᵀ] of the ffn_down input"
        metadata["ibke.accumulation"] = "float32 ssyrk per batch, summed in float64, divided by token_count"
        metadata["ibke.version"] = ibkeVersion
        metadata["ibke.created"] = ISO8601DateFormatter().string(from: Date())
        let f = moment.matrix.shape[0]
        let url = url(for: moment.key)
        try SafetensorsWriter.write(
            tensors: [.init(name: Self.tensorName, shape: [f, f], floats: moment.matrix.scalars)],
            metadata: metadata, to: url)
        return url
    }

    /// Reads a statistics file, checking every key field against `key`.
    ///
    /// - Throws: ``StatisticsError/keyMismatch(file:field:expected:found:)`` naming the first
    ///   field that differs, ``StatisticsError/malformed(file:detail:)``, or `SafetensorsError`.
    public static func read(_ url: URL, expecting key: StatisticsKey) throws -> SecondMoment {
        let file = try SafetensorsFile(url: url)
        let metadata = file.metadata
        guard metadata["ibke.format"] == format else {
            throw StatisticsError.malformed(
                file: url.path, detail: "`ibke.format` is \(metadata["ibke.format"] ?? "missing"), expected \(format)")
        }
        for (name, expected) in key.fields {
            let found = metadata[name] ?? "nothing"
            guard found == expected else {
                throw StatisticsError.keyMismatch(file: url.path, field: fieldDescription(name), expected: expected, found: found)
            }
        }
        guard let tokens = metadata["ibke.token_count"].flatMap(Int.init), tokens > 0,
            let windows = metadata["ibke.window_count"].flatMap(Int.init)
        else {
            throw StatisticsError.malformed(file: url.path, detail: "no positive `ibke.token_count` and `ibke.window_count`")
        }
        guard let shape = file.shape(of: tensorName), shape.count == 2, shape[0] == shape[1] else {
            throw StatisticsError.malformed(file: url.path, detail: "no square `\(tensorName)` matrix")
        }
        let matrix = Tensor(shape: shape, values: try file.readFloats(tensorName))
        let provenance = metadata.filter { name, _ in !key.fields.contains { $0.name == name } }
        return SecondMoment(key: key, matrix: matrix, tokenCount: tokens, windowCount: windows, provenance: provenance)
    }

    /// A key field's name in words, for mismatch errors.
    static func fieldDescription(_ name: String) -> String {
        switch name {
        case "ibke.model_sha256": "model (SHA-256)"
        case "ibke.corpus_sha256": "corpus (SHA-256)"
        case "ibke.samples": "token count"
        default: String(name.dropFirst("ibke.".count)).replacingOccurrences(of: "_", with: " ")
        }
    }
}
