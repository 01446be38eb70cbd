import Foundation
import TestSupport
import Testing

/// `ibke eval` end to end on the tiny Llama and the committed dataset fixtures.
@Suite struct EvalCommandTests {
    static let datasets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("EvaluationTests/Fixtures/datasets")

    @Test func evalWritesARunAndResumeFinishesIt() throws {
        let folder = try TemporaryDirectory()
        let out = folder.appending("run")
        let arguments = [
            "eval", "--model", Fixtures.model("tiny-llama").path,
            "--dataset", "jsonl:" + Self.datasets.appendingPathComponent("custom.jsonl").path,
            "--methods", "ft-l,ft-m", "--limit", "3", "--out", out.path,
        ]
        let first = try IBKE.run(arguments, timeout: 120)
        #expect(first.status == 0, "\(first)")
        #expect(first.stdout.contains("| ft-m |"), "\(first)")
        let params = try String(contentsOf: out.appendingPathComponent("params.json"), encoding: .utf8)
        for key in ["model_sha256", "dataset_sha256", "hyperparameters", "seed", "ibke_version"] {
            #expect(params.contains("\"\(key)\""), "params.json lacks \(key)")
        }
        // Again without --resume: refused, nothing changed.
        let again = try IBKE.run(arguments, timeout: 60)
        #expect(again.status == 1 && again.stderr.contains("--resume"), "\(again)")
        // Resume after losing a case file: only that case is redone.
        try FileManager.default.removeItem(at: out.appendingPathComponent("cases/ft-m/1.json"))
        let resumed = try IBKE.run(arguments + ["--resume"], timeout: 120)
        #expect(resumed.status == 0, "\(resumed)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("cases/ft-m/1.json").path))
    }

    @Test func badArgumentsAreOneLineErrors() throws {
        let model = Fixtures.model("tiny-llama").path
        let folder = try TemporaryDirectory()
        let malformed = folder.appending("bad.json")
        try Data("[{\"subject\": \"x\", \"src\": 3}]".utf8).write(to: malformed)
        let cases: [([String], [String])] = [
            (["--dataset", "zsre:" + malformed.path, "--methods", "ft-m"], ["bad.json", "record 0", "src"]),
            (["--dataset", "nonsense:" + malformed.path, "--methods", "ft-m"], ["nonsense"]),
            (["--dataset", "jsonl:" + Self.datasets.appendingPathComponent("custom.jsonl").path, "--methods", "rome2"], ["rome2"]),
            (
                [
                    "--dataset", "jsonl:" + Self.datasets.appendingPathComponent("custom.jsonl").path, "--methods", "ft-m",
                    "--protocol", "batch",
                ], ["protocol batch: expected single, batch:N or sequential:N (N ≥ 1) (--protocol)"]
            ),
            (
                ["--dataset", "jsonl:" + Self.datasets.appendingPathComponent("custom.jsonl").path, "--methods", "ft-m,ft-m"],
                ["a method is listed twice: ft-m,ft-m (--methods)"]
            ),
            (
                ["--dataset", "jsonl:" + Self.datasets.appendingPathComponent("custom.jsonl").path, "--methods", "ft-m", "--resume"],
                ["holds no run to resume (no params.json) (run without --resume to start one)"]
            ),
        ]
        for (arguments, pieces) in cases {
            let result = try IBKE.run(["eval", "--model", model] + arguments + ["--out", folder.appending("r").path])
            // An unknown method is a bad option value: a usage error (64); the others fail in the run (1).
            #expect(result.status == (arguments.contains("rome2") ? 64 : 1), "\(result)")
            for piece in pieces { #expect(result.stderr.contains(piece), "\(piece) missing: \(result)") }
        }
    }

    @Test func romeRunsRecordTheirStatistics() throws {
        let folder = try TemporaryDirectory()
        let out = folder.appending("run")
        let result = try IBKE.run(
            [
                "eval", "--model", Fixtures.model("tiny-llama").path,
                "--dataset", "jsonl:" + Self.datasets.appendingPathComponent("custom.jsonl").path,
                "--methods", "rome,ft-m", "--limit", "2", "--protocol", "sequential:2",
                "--stats-corpus", Fixtures.folder.appendingPathComponent("tiny-corpus").path,
                "--stats-samples", "300", "--out", out.path,
            ],
            environment: ["IBKE_HOME": folder.appending("home").path], timeout: 120)
        #expect(result.status == 0, "\(result)")
        let label = "corpus articles.txt,more/history.tokens,notes.jsonl (sha256 "
        #expect(result.stderr.contains("statistics for layer 0: \(label)"), "\(result)")
        #expect(
            result.stdout.contains("**rome** (statistics: \(label)") && result.stdout.contains("**ft-m** (statistics: none)"),
            "\(result)")
        for file in ["summary.json", "params.json"] {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(file))) as? [String: Any]
            let methods = try #require(json?["methods"] as? [[String: Any]], "\(file)")
            let statistics = methods.map { $0["statistics"] as? String ?? "missing" }
            #expect(
                statistics.count == 2 && statistics[0].hasPrefix(label) && statistics[0].hasSuffix("…), 300 tokens"),
                "\(file): \(statistics)")
            #expect(statistics[1] == "none", "\(file)")
        }
    }
}
