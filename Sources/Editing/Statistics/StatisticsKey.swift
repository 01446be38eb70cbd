import Foundation
import ModelFormats
import Models

/// Where the text of a statistic came from; printed with every result.
public enum StatisticsSource: String, Sendable, Hashable {
    /// A text corpus given by the user.
    case corpus
    /// Text sampled from the model itself (no corpus was given).
    case modelSamples = "model-samples"
}

/// Everything a second-moment matrix depends on.
///
/// The cache file is named by a hash of the key and the key is written into the file and
/// checked field by field on load: the model is identified by the SHA-256 of its content, never
/// by its file name, so two checkpoints with the same name cannot share statistics (the
/// reference implementations key on the model's folder name, METHODS.md §6).
public struct StatisticsKey: Hashable, Sendable {
    /// ``Models/LanguageModel/contentHash()`` of the model.
    public var modelSHA256: String
    public var layer: Int
    /// The matrix whose input the keys are.
    public var module = "ffn_down.input"
    public var source: StatisticsSource
    /// The corpus files (``TextCorpus/identity``), or how the model samples were drawn.
    public var corpus: String
    /// ``TextCorpus/sha256``, or `none` for model samples.
    public var corpusSHA256: String
    /// How windows were chosen from the text (``TokenWindows/scheme(seed:)``).
    public var sampling: String
    /// Tokens asked for; nil for the whole corpus.
    public var samples: Int?
    /// Longest window, in tokens.
    public var windowLength: Int
    /// Element type of the stored matrix.
    public var dtype = "F32"
    /// How the model computed the keys (``Models/WeightPrecision``): quantized products give
    /// slightly other keys than float32 ones.
    public var compute = WeightPrecision.float32

    public init(
        modelSHA256: String, layer: Int, source: StatisticsSource, corpus: String, corpusSHA256: String,
        sampling: String, samples: Int?, windowLength: Int
    ) {
        self.modelSHA256 = modelSHA256
        self.layer = layer
        self.source = source
        self.corpus = corpus
        self.corpusSHA256 = corpusSHA256
        self.sampling = sampling
        self.samples = samples
        self.windowLength = windowLength
    }

    /// The key as safetensors metadata, in a fixed order (names as in the file header).
    public var fields: [(name: String, value: String)] {
        [
            ("ibke.model_sha256", modelSHA256), ("ibke.layer", String(layer)), ("ibke.module", module),
            ("ibke.source", source.rawValue), ("ibke.corpus", corpus), ("ibke.corpus_sha256", corpusSHA256),
            ("ibke.sampling", sampling), ("ibke.samples", samples.map(String.init) ?? "all"),
            ("ibke.window_length", String(windowLength)), ("ibke.dtype", dtype),
        ]
            // Absent for float32, so that the files cached before the field existed keep their key.
            + (compute == .float32 ? [] : [("ibke.compute", compute.rawValue)])
    }

    /// SHA-256 of the fields, one `name=value` line each.
    public var digest: String {
        let text = fields.map { "\($0.name)=\($0.value)\n" }.joined()
        return Data(text.utf8).withUnsafeBytes { SHA256.hex($0) }
    }

    /// `mom2-L<layer>-<16 hex digits of the digest>.safetensors`: readable, and unique per key.
    public var fileName: String {
        "mom2-L\(layer)-\(digest.prefix(16)).safetensors"
    }
}
