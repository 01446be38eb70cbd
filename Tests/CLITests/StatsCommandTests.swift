import Foundation
import TestSupport
import Testing

/// `ibke stats` on the tiny Llama and the committed tiny corpus.
@Suite struct StatsCommandTests {
    static let corpus = Fixtures.folder.appendingPathComponent("tiny-corpus")

    @Test func computesEachLayerOnceThenLoadsItFromTheCache() throws {
        let home = try TemporaryDirectory()
        let arguments = [
            "stats", "--model", Fixtures.model("tiny-llama").path, "--layers", "0-1", "--corpus", Self.corpus.path,
            "--samples", "200", "--max-length", "32",
        ]
        let first = try IBKE.succeed(arguments, environment: ["IBKE_HOME": home.url.path])
        let lines = first.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(first)")
        for (layer, line) in zip(0..., lines) {
            #expect(line.hasPrefix("layer \(layer): computed, 200 tokens (source: corpus), trace "), "\(first)")
            let path = String(try #require(line.split(separator: ", ").last))
            #expect(path.hasPrefix(home.url.appendingPathComponent("cache/stats/mom2-L\(layer)-").path))
            #expect(FileManager.default.fileExists(atPath: path))
        }
        let second = try IBKE.succeed(arguments, environment: ["IBKE_HOME": home.url.path])
        #expect(second.stdout.split(separator: "\n").allSatisfy { $0.contains(": loaded from the cache, 200 tokens") }, "\(second)")
        let forced = try IBKE.succeed(arguments + ["--force", "--layers", "1"], environment: ["IBKE_HOME": home.url.path])
        #expect(forced.stdout.hasPrefix("layer 1: computed"), "\(forced)")
    }

    @Test func withoutACorpusItSaysSoAndReadsTheShippedSample() throws {
        let home = try TemporaryDirectory()
        let result = try IBKE.succeed(
            [
                "stats", "--model", Fixtures.model("tiny-llama").path, "--layers", "1",
                "--samples", "64", "--max-length", "16",
            ], environment: ["IBKE_HOME": home.url.path])
        #expect(
            result.stderr.contains("no --corpus given: the statistics come from the small corpus sample shipped with ibke"), "\(result)")
        #expect(result.stdout.hasPrefix("layer 1: computed, 64 tokens (source: corpus)"), "\(result)")
    }

    @Test func aMissingCorpusFileIsAnError() throws {
        let missing = Self.corpus.appendingPathComponent("missing.txt").path
        let result = try IBKE.run(["stats", "--model", Fixtures.model("tiny-llama").path, "--layers", "0", "--corpus", missing])
        #expect(result.status == 1)
        #expect(result.stderrLines.last == "Error: \(missing): cannot read: no such file or folder", "\(result)")
    }

    @Test(arguments: ["5", "1-0", "x", "0,,1"])
    func badLayersAreErrors(_ layers: String) throws {
        let result = try IBKE.run([
            "stats", "--model", Fixtures.model("tiny-llama").path, "--layers", layers,
            "--corpus", Self.corpus.path, "--max-length", "32",
        ])
        #expect(result.status == 1)
        #expect(result.stderrLines.last?.hasPrefix("Error: ") == true && result.stderrLines.last?.contains("layer") == true, "\(result)")
    }
}
