import Foundation
import Testing

@testable import Editing

/// Reading statistics corpora and cutting them into token windows.
@Suite struct CorpusTests {
    static let fixture = TestModels.fixtures.appendingPathComponent("tiny-corpus")

    /// A fresh folder holding `files` (relative name → contents).
    static func folder(_ files: [String: String]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("corpus-\(UUID().uuidString)")
        for (name, text) in files {
            let file = url.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: file)
        }
        return url
    }

    @Test func aFolderIsReadRecursivelyInSortedOrderSkippingOtherFiles() throws {
        let corpus = try TextCorpus(url: Self.fixture)
        #expect(corpus.fileNames == ["articles.txt", "more/history.tokens", "notes.jsonl"])
        #expect(corpus.identity == "articles.txt,more/history.tokens,notes.jsonl")
        #expect(corpus.documents.count == 2 + 1 + 3)
        #expect(corpus.documents[0].hasPrefix("= The Lighthouse ="))
        #expect(corpus.documents[1].hasPrefix("= The Mill ="))
        #expect(corpus.documents[3] == "Bees visit many flowers in a single morning and carry pollen from one to the next.")
        #expect(corpus.sha256.count == 64)
    }

    @Test func wikiTextFilesAreSplitAtTitlesAndDetokenised() throws {
        let corpus = try TextCorpus(url: Self.fixture.appendingPathComponent("more/history.tokens"))
        #expect(
            corpus.documents == [
                """
                = Harbour Bridge =

                The bridge was opened in 1932, after eight years of work. It carries a road-rail deck 1,149 metres long, 48.8 metres wide.

                = = Construction = =

                Two arches were built out from each shore (one on either side) and joined in the middle.
                """
            ])
        #expect(Array(try TextCorpus(url: Self.fixture.appendingPathComponent("more/history.tokens")).fileNames) == ["history.tokens"])
    }

    @Test func plainTextWithoutTitlesIsSplitAtBlankLines() throws {
        let url = try Self.folder(["a.txt": "one\ntwo\n\n\n  \nthree\n"])
        #expect(try TextCorpus(url: url.appendingPathComponent("a.txt")).documents == ["one\ntwo", "three"])
    }

    @Test func theHashCoversNamesAndBytes() throws {
        let a = try TextCorpus(url: Self.folder(["x.txt": "same text"]))
        let b = try TextCorpus(url: Self.folder(["y.txt": "same text"]))
        let c = try TextCorpus(url: Self.folder(["x.txt": "same text!"]))
        let moved = try TextCorpus(url: Self.folder(["x.txt": "same text"]))
        #expect(a.sha256 != b.sha256 && a.sha256 != c.sha256)
        #expect(a.sha256 == moved.sha256, "the folder's own path is not part of the identity")
    }

    @Test func unreadableOrEmptyInputNamesTheFile() throws {
        let folder = try Self.folder([
            "empty.txt": " \n\n", "bad.jsonl": "{\"text\": \"ok\"}\n{\"title\": 1}\n",
            "other/readme.md": "not a corpus file", "latin1.txt": "",
        ])
        try Data([0x63, 0x61, 0x66, 0xE9]).write(to: folder.appendingPathComponent("latin1.txt"))
        let empty = folder.appendingPathComponent("empty.txt").path
        #expect(throws: StatisticsError.empty(file: empty, detail: "no text in the file")) {
            try TextCorpus(url: URL(fileURLWithPath: empty))
        }
        #expect(
            throws: StatisticsError.badJSONLine(
                file: folder.appendingPathComponent("bad.jsonl").path, line: 2,
                detail: "expected an object with a string \"text\" field")
        ) {
            try TextCorpus(url: folder.appendingPathComponent("bad.jsonl"))
        }
        #expect(throws: StatisticsError.unreadable(file: folder.appendingPathComponent("latin1.txt").path, reason: "not UTF-8 text")) {
            try TextCorpus(url: folder.appendingPathComponent("latin1.txt"))
        }
        let missing = folder.appendingPathComponent("missing.txt").path
        #expect(throws: StatisticsError.unreadable(file: missing, reason: "no such file or folder")) {
            try TextCorpus(url: URL(fileURLWithPath: missing))
        }
        let other = folder.appendingPathComponent("other").path
        #expect(throws: StatisticsError.empty(file: other, detail: "no .txt, .jsonl or .tokens files in the folder")) {
            try TextCorpus(url: URL(fileURLWithPath: other))
        }
        #expect((try? TextCorpus(url: folder)) == nil, "a folder with a bad file fails as a whole")
    }

    @Test func windowsAreCutShuffledAndTakenToTheExactTokenCount() {
        let documents = ["a", "bb", "ccc", "dddd"].map { String(repeating: $0, count: 25) }
        let encode = { (text: String) in text.unicodeScalars.map { Int($0.value) } }
        let all = TokenWindows.make(documents: documents, maxLength: 10, samples: nil, seed: 7, encode: encode)
        #expect(all.map(\.count).reduce(0, +) == 250)
        #expect(all.count == 3 + 5 + 8 + 10, "each document in windows of at most 10, the last one shorter")
        #expect(all.allSatisfy { $0.count <= 10 && Set($0).count == 1 }, "a window never spans documents")
        let some = TokenWindows.make(documents: documents, maxLength: 10, samples: 95, seed: 7, encode: encode)
        #expect(some.map(\.count).reduce(0, +) == 95)
        #expect(Array(some.dropLast()) == Array(all.prefix(some.count - 1)), "a smaller sample is a prefix of a larger one")
        #expect(all[some.count - 1].starts(with: some[some.count - 1]))
        let reshuffled = TokenWindows.make(documents: documents, maxLength: 10, samples: nil, seed: 8, encode: encode)
        #expect(
            reshuffled != all && reshuffled.sorted { $0.lexicographicallyPrecedes($1) } == all.sorted { $0.lexicographicallyPrecedes($1) })
    }

    @Test func batchesHoldAtMostTheTokenBudget() {
        let windows = [[Int]](repeating: [1, 2, 3], count: 7) + [Array(0..<20)]
        let batches = TokenWindows.batches(windows, tokens: 10)
        #expect(batches.map { $0.count } == [3, 3, 1, 1])
        #expect(Array(batches.joined()) == windows)
    }
}
