import Foundation
import TestSupport
import Testing

/// `ibke report` on run directories written here (CLITests cannot link the library, so the
/// summary.json is written by hand with RunSummary's Codable keys).
@Suite struct ReportCommandTests {
    static let summary = #"""
        {
          "run": "cli-run",
          "model_path": "/models/SmolLM2-135M-Instruct-Q4_1.gguf",
          "model_sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "dataset_kind": "zsre", "dataset_format": "json", "dataset_path": "data/zsre.json",
          "settings": {
            "metric_family": "zsre-token-accuracy", "protocol": "sequential", "batch_size": 1,
            "evaluate_every": 1, "top_k": 1, "chat_template": false, "generation": false,
            "zsre_target": "alt", "seed": 1
          },
          "metric_info": [
            {"name": "reliability", "label": "Rel.", "definition": "token accuracy of alt on src"}
          ],
          "methods": [
            {
              "method": "FT-L", "hyperparameters": {"lr": 0.0005}, "statistics": "none", "cases": 2,
              "metrics": {"reliability": 0.954}, "pre_metrics": {"reliability": 0.1},
              "edit_seconds_mean": 1.5, "evaluation_seconds_mean": 0.25,
              "curve": [{"edits": 1, "metrics": {"reliability": 1.0}}, {"edits": 2, "metrics": {"reliability": 0.954}}]
            }
          ],
          "created": "2025-01-02T03:04:05Z"
        }
        """#

    @Test func writesMarkdownAndHTML() throws {
        let folder = try TemporaryDirectory()
        let run = folder.appending("cli-run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data(Self.summary.utf8).write(to: run.appendingPathComponent("summary.json"))
        let out = folder.appending("report.html")

        let result = try IBKE.succeed(["report", run.path, "--out", out.path])
        #expect(result.stdout.hasPrefix("# IBKE evaluation: cli-run\n"))
        #expect(result.stdout.contains("| FT-L | 95.4 | 1.50 | 0.250 |"))
        #expect(result.stderr.contains("wrote \(out.path)"))
        let html = try String(contentsOf: out, encoding: .utf8)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.components(separatedBy: "<svg").count - 1 == 2)
        // Written through a temporary file that is renamed into place: nothing else is left.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.url.path).sorted() == ["cli-run", "report.html"])
    }

    @Test func missingRunDirectoryNamesTheFile() throws {
        let folder = try TemporaryDirectory()
        let missing = folder.appending("no-such-run")
        let result = try IBKE.run(["report", missing.path, "--out", folder.appending("report.html").path])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("Error: \(missing.path)/summary.json: no summary.json"), "\(result)")
        #expect(result.stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: folder.appending("report.html").path))
    }

    @Test func malformedSummaryNamesTheFile() throws {
        let folder = try TemporaryDirectory()
        let run = folder.appending("broken")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data(#"{"run": "broken"}"#.utf8).write(to: run.appendingPathComponent("summary.json"))
        let result = try IBKE.run(["report", run.path, "--out", folder.appending("report.html").path])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("Error: \(run.path)/summary.json: not an IBKE run summary"), "\(result)")
    }

    @Test func needsARunDirectory() throws {
        let result = try IBKE.run(["report"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("at least one run directory"))
    }
}
