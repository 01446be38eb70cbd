import Editing
import Foundation
import Testing

/// The corpus sample compiled into the library: written out once, read as a corpus, labelled.
@Suite struct CorpusSampleTests {
    @Test func theSampleIsWrittenOnceAndReadAsACorpusOfWikipediaArticles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-sample-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = try CorpusSample.file(in: folder)
        #expect(url.lastPathComponent == CorpusSample.fileName)
        #expect(try Data(contentsOf: url) == Data(CorpusSample.bytes))
        let modified = try FileManager.default.attributesOfItem(atPath: url.path)[.modificationDate] as? Date
        Thread.sleep(forTimeInterval: 0.01)
        #expect(try CorpusSample.file(in: folder) == url)
        #expect(
            try FileManager.default.attributesOfItem(atPath: url.path)[.modificationDate] as? Date == modified, "an identical copy is kept")

        let corpus = try TextCorpus(url: url)
        #expect(corpus.documents.count == 68)
        let first = corpus.documents.first ?? ""
        #expect(first.contains("= Anarchism =") && first.contains("Anarchism is a political philosophy"), "\(first.prefix(60))")
        #expect(corpus.sha256 == CorpusSample.sha256)

        // A damaged copy is replaced.
        try Data("not the sample".utf8).write(to: url)
        _ = try CorpusSample.file(in: folder)
        #expect(try Data(contentsOf: url) == Data(CorpusSample.bytes))
    }

    @Test func statisticsFromTheSampleAreLabelledAsSuch() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-sample-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = try TestModels.tinyLlama()
        let moments = SecondMoments(
            model: model, corpus: try CorpusSample.file(in: folder), samples: 64,
            cache: StatisticsCache(directory: folder.appendingPathComponent("stats"), ibkeVersion: "test"))
        _ = try moments.matrix(layer: 0)
        #expect(moments.label == "the corpus sample shipped with ibke (68 Wikipedia article openings), 64 tokens")
        // The same text under another name is an ordinary corpus.
        let renamed = folder.appendingPathComponent("other.txt")
        try Data(CorpusSample.bytes).write(to: renamed)
        let other = SecondMoments(
            model: model, corpus: renamed, samples: 64,
            cache: StatisticsCache(directory: folder.appendingPathComponent("stats"), ibkeVersion: "test"))
        #expect(other.label.hasPrefix("corpus other.txt (sha256 "))
    }
}
