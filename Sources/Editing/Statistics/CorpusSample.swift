import Foundation
import ModelFormats

/// The text second-moment statistics come from when no corpus is given: the opening paragraphs
/// of 68 English Wikipedia articles (81 kB, about 18,000 tokens; CC BY-SA), compiled into the
/// library so that any `ibke` binary has it (`Scripts/make_corpus_sample.py` writes it).
///
/// It is small so that a first ROME, MEMIT or AlphaEdit edit on a fresh install takes seconds;
/// statistics from a corpus of 100,000 tokens or more are better conditioned, and runs label
/// statistics from the sample as such (``SecondMoments/label``).
public enum CorpusSample {
    /// The file name the sample is written under, and the name its statistics record.
    public static let fileName = "ibke-corpus-sample.txt"

    /// The sample's bytes.
    public static var bytes: [UInt8] { PackageResources.corpus_sample_txt }

    /// ``TextCorpus/sha256`` of the sample written as ``fileName``: how a corpus is recognised
    /// as the sample whatever folder it was written to.
    public static let sha256: String = {
        var hasher = SHA256()
        bytes.withUnsafeBytes { TextCorpus.hashFile(name: fileName, bytes: $0, into: &hasher) }
        return hasher.finalizeHex()
    }()

    /// Where ``file(in:)`` writes the sample; ``SecondMoments`` given this path writes it there
    /// when it first reads it, so that commands that need no statistics write nothing.
    public static func location(in directory: URL) -> URL { directory.appendingPathComponent(fileName) }

    /// The sample as a file in `directory`, written there (atomically) unless an identical copy
    /// is already there: the corpus to give ``SecondMoments`` and ``StatisticsCollector``.
    public static func file(in directory: URL) throws -> URL {
        let url = location(in: directory)
        if let existing = try? Data(contentsOf: url), existing.elementsEqual(bytes) { return url }
        let failure = { (reason: String) in StatisticsError.unreadable(file: url.path, reason: "cannot write the corpus sample: \(reason)")
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw failure(error.localizedDescription)
        }
        try AtomicFile.write(Data(bytes), to: url, failure: failure)
        return url
    }
}
