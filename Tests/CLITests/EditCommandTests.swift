import Foundation
import TestSupport
import Testing

/// `ibke edit` on the tiny Llama.
@Suite struct EditCommandTests {
    @Test func editPrintsBeforeAndAfterAndSavesTheDelta() throws {
        let folder = try TemporaryDirectory()
        let delta = folder.appending("d.safetensors")
        let result = try IBKE.run(
            [
                "edit", "--model", Fixtures.model("tiny-llama").path, "--prompt", "{} lives in",
                "--subject", "Alice", "--target", "the city", "--check", "Alice's home is in",
                "--save-delta", delta.path,
            ], timeout: 60)
        #expect(result.status == 0, "\(result)")
        for piece in ["before", "after", "paraphrase: Alice's home is in", "unrelated:", "top-5 after:"] {
            #expect(result.stdout.contains(piece), "\(piece): \(result)")
        }
        let header = try Data(contentsOf: delta).prefix(4096)
        #expect(String(decoding: header, as: UTF8.self).contains("ibke-delta-1"))
    }

    @Test func aSubjectMissingFromThePromptIsAnError() throws {
        let result = try IBKE.run([
            "edit", "--model", Fixtures.model("tiny-llama").path, "--prompt", "Bob lives in",
            "--subject", "Alice", "--target", "Rome",
        ])
        #expect(result.status == 1)
        #expect(result.stderrLines.last?.contains("\"Alice\" does not occur in the prompt") == true, "\(result)")
    }

    static let corpus = Fixtures.folder.appendingPathComponent("tiny-corpus")

    /// Three requests in the JSONL edit format (one with `target_true`, a blank line between).
    static func editFile(_ folder: TemporaryDirectory) throws -> URL {
        let file = folder.appending("edits.jsonl")
        try Data(
            """
            {"prompt": "{} lives in", "subject": "Alice", "target_new": "Paris", "target_true": "London"}

            {"prompt": "Bob works at", "subject": "Bob", "target_new": "the bank"}
            {"id": "carol", "prompt": "{} likes", "subject": "Carol", "target_new": "tea"}

            """.utf8
        ).write(to: file)
        return file
    }

    @Test func batchAndSequentialArgumentsAreChecked() throws {
        let folder = try TemporaryDirectory()
        let file = try Self.editFile(folder).path
        let model = Fixtures.model("tiny-llama").path
        let cases: [([String], String)] = [
            (["--batch", file, "--sequential", file], "--batch and --sequential are mutually exclusive"),
            (["--batch", file, "--prompt", "{} lives in"], "drop --prompt, --subject and --target"),
            (["--sequential", file, "--target", "Rome"], "drop --prompt, --subject and --target"),
            (
                ["--prompt", "{} lives in", "--subject", "Alice"],
                "give --prompt, --subject and --target, or --batch FILE / --sequential FILE"
            ),
            ([], "give --prompt, --subject and --target"),
            (["--batch", file, "--generations=-1"], "--generations must be 0 or more"),
        ]
        for (arguments, message) in cases {
            let result = try IBKE.run(["edit", "--model", model] + arguments)
            #expect(result.status != 0, "\(result)")
            #expect(result.stderr.contains(message), "\(message): \(result)")
        }
    }

    @Test func aMalformedLineNamesTheFileAndLine() throws {
        let folder = try TemporaryDirectory()
        let file = folder.appending("bad.jsonl")
        try Data(
            """
            {"prompt": "{} lives in", "subject": "Alice", "target_new": "Paris"}
            {"prompt": "{} lives in", "subject": "Bob", "target_new": 3}
            """.utf8
        ).write(to: file)
        let model = Fixtures.model("tiny-llama").path
        for mode in ["--batch", "--sequential"] {
            let result = try IBKE.run(["edit", "--model", model, mode, file.path])
            #expect(result.status == 1, "\(result)")
            let line = String(result.stderrLines.last ?? "")
            #expect(
                line.hasPrefix("Error: \(file.path): line 2 ") && line.contains("field \"target_new\": expected a string"),
                "\(result)")
        }
        try Data("{\"prompt\": \"x\",}\n".utf8).write(to: file)
        let syntax = try IBKE.run(["edit", "--model", model, "--batch", file.path])
        #expect(syntax.status == 1 && syntax.stderrLines.last?.hasPrefix("Error: \(file.path): line 1, column") == true, "\(syntax)")
        let missing = try IBKE.run(["edit", "--model", model, "--batch", folder.appending("none.jsonl").path])
        #expect(missing.status == 1 && missing.stderr.contains("none.jsonl: no such file"), "\(missing)")
    }

    @Test func batchEditShowsEveryRequestBeforeAndAfter() throws {
        let folder = try TemporaryDirectory()
        let result = try IBKE.run(
            [
                "edit", "--model", Fixtures.model("tiny-llama").path, "--batch", try Self.editFile(folder).path,
                "--generations", "2", "--check", "Alice's home is in",
            ], timeout: 60)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.hasPrefix("edit: 3 requests from edits.jsonl, in one batch, with ft-m in "), "\(result)")
        for piece in [
            "[1] \"Alice lives in\" → \" Paris\"", "P(\" London\") (target_true)", "[2] \"Bob works at\"",
            "(original answer)", "[3] \"Carol likes\" → \" tea\"", "top-1", "prompt [1]: Alice lives in",
            "prompt [2]: Bob works at", "paraphrase: Alice's home is in", "unrelated:",
            "generations for the first 2 of 3 requests",
        ] {
            #expect(result.stdout.contains(piece), "\(piece): \(result)")
        }
        #expect(!result.stdout.contains("prompt [3]") && !result.stdout.contains("right after its own edit"))
    }

    /// Messages that once misled: an unknown method, `--editor` with a method that takes none,
    /// a NaN setting, a target the model already gives.
    @Test func unclearRequestsGetClearMessages() throws {
        let folder = try TemporaryDirectory()
        let model = Fixtures.model("tiny-llama").path
        let request = ["--model", model, "--prompt", "{} lives in", "--subject", "Alice", "--target", "Paris"]
        let unknown = try IBKE.run(["edit", "--method", "foo"] + request)
        #expect(
            unknown.status == 64 && unknown.stderr.contains("unknown editing method foo (known: ft-l (ft), ft-m, rome (r-rome), memit,")
                && !unknown.stderr.contains("--methods"), "\(unknown)")
        let editor = try IBKE.run(["edit", "--method", "rome", "--editor", "x.safetensors"] + request)
        #expect(editor.status != 0 && editor.stderr.contains("--editor is for the trained methods"), "\(editor)")
        // The library's message names no flag; the CLI adds the one that resolves it.
        let noEditor = try IBKE.run(["edit", "--method", "ibke"] + request)
        #expect(
            noEditor.status == 1
                && noEditor.stderrLines.last == "Error: ibke: `editor`: expected a trained editor file"
                    + " (--editor FILE; train one with `ibke train --method ibke`)",
            "\(noEditor)")
        let nan = folder.appending("nan.yaml")
        try Data("lr: .nan\n".utf8).write(to: nan)
        let refused = try IBKE.run(["edit", "--hparams", nan.path] + request)
        #expect(
            refused.status == 1 && refused.stderrLines.last?.contains("`lr`: expected a finite number, found nan") == true,
            "\(refused)")
        let first = try IBKE.succeed(["edit"] + request)
        #expect(!first.stderr.contains("note: the model already answers"), "\(first)")
    }

    /// A target the model already gives is edited with a note saying so.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: TrainCommandTests.defaultModel.path)))
    func aTargetTheModelAlreadyGivesIsNoted() throws {
        let result = try IBKE.run(
            [
                "edit", "--model", TrainCommandTests.defaultModel.path, "--prompt", "{} is",
                "--subject", "The capital of France", "--target", "Paris",
            ], timeout: 120)
        #expect(result.status == 0 && result.stderr.contains("note: the model already answers \" Paris\" here"), "\(result)")
    }

    /// The committed editors are looked up in `$IBKE_HOME/editors/` first, where `ibke model
    /// fetch` installs them, so a binary moved away from its checkout still finds them.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: TrainCommandTests.defaultModel.path)))
    func trainedEditorsAreFoundInIBKEHomeFirst() throws {
        let folder = try TemporaryDirectory()
        let editors = folder.appending("home/editors/SmolLM2-135M-Instruct")
        try FileManager.default.createDirectory(at: editors, withIntermediateDirectories: true)
        try Data("not an editor".utf8).write(to: editors.appendingPathComponent("ibke.safetensors"))
        let edit = [
            "edit", "--model", TrainCommandTests.defaultModel.path, "--method", "ibke", "--prompt",
            "{} is located in the city of", "--subject", "The Eiffel Tower", "--target", "Rome", "--threads", "1",
        ]
        let environment = ["IBKE_HOME": folder.appending("home").path]
        let broken = try IBKE.run(edit, environment: environment, timeout: 120)
        #expect(broken.status == 1 && broken.stderr.contains(editors.path), "\(broken)")
        // A good copy there is used.
        let committed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Editors/SmolLM2-135M-Instruct/ibke.safetensors")
        try FileManager.default.removeItem(at: editors.appendingPathComponent("ibke.safetensors"))
        try FileManager.default.copyItem(at: committed, to: editors.appendingPathComponent("ibke.safetensors"))
        let good = try IBKE.run(edit, environment: environment, timeout: 120)
        #expect(good.status == 0 && good.stdout.contains("with ibke"), "\(good)")
    }

    /// `--sequential` edits one request after another; its saved delta, applied by `ibke apply`,
    /// gives the model it printed "after" for.
    @Test func sequentialDeltaReproducesTheEditedModel() throws {
        let folder = try TemporaryDirectory()
        let hyperparameters = folder.appending("ft.yaml")
        try Data("lr: 0.5\nnum_steps: 40\nlayers: [1]\n".utf8).write(to: hyperparameters)
        let delta = folder.appending("sequence.safetensors")
        let model = Fixtures.model("tiny-llama").path
        let result = try IBKE.run(
            [
                "edit", "--model", model, "--hparams", hyperparameters.path,
                "--sequential", try Self.editFile(folder).path, "--generations", "0",
                "--save-delta", delta.path,
            ], timeout: 60)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.hasPrefix("edit: 3 requests from edits.jsonl, one after another, with ft-m in "), "\(result)")
        #expect(result.stdout.components(separatedBy: "right after its own edit").count == 4, "\(result)")
        // P(" Paris") after every edit, as printed.
        let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("    P(\" Paris\")  ") })
        let printed = try #require(line.split(separator: " ").last.flatMap { Double($0) })

        let exported = folder.appending("edited")
        let applied = try IBKE.run(["apply", "--model", model, "--delta", delta.path, "--out", exported.path])
        #expect(applied.status == 0 && applied.stdout.contains("applied sequence.safetensors (ft-m): blk.1.ffn_down.weight"), "\(applied)")
        let score = try IBKE.run(["score", "--model", exported.path, "--prompt", "Alice lives in", "--target", " Paris"])
        let total = try #require(score.stdout.split(separator: "\n").first { $0.hasPrefix("total log P") })
        let p = try #require(total.components(separatedBy: "P = ").last?.split(separator: " ").first.flatMap { Double($0) })
        #expect(printed > 0.001 && abs(p - printed) < 1e-4, "printed \(printed), applied \(p): \(score)")
    }

    @Test func romeTakesItsStatisticsFromTheCorpusOrTheLabelledSample() throws {
        let model = Fixtures.model("tiny-llama").path
        let home = try TemporaryDirectory()
        let edit = [
            "edit", "--model", model, "--method", "rome", "--prompt", "{} lives in", "--subject", "Alice",
            "--target", "the city", "--stats-samples", "300",
        ]
        let withCorpus = try IBKE.run(edit + ["--stats-corpus", Self.corpus.path], environment: ["IBKE_HOME": home.url.path], timeout: 60)
        #expect(withCorpus.status == 0, "\(withCorpus)")
        let label = "corpus articles.txt,more/history.tokens,notes.jsonl (sha256 "
        #expect(withCorpus.stdout.hasPrefix("edit: \"Alice lives in\" → \" the city\" with rome (statistics: \(label)"), "\(withCorpus)")
        #expect(withCorpus.stdout.split(separator: "\n")[0].contains("…), 300 tokens) in "), "\(withCorpus)")
        #expect(withCorpus.stderr.contains("statistics for layer 0: \(label)"), "\(withCorpus)")
        #expect(!withCorpus.stderr.contains("fallback"))
        // The same from the environment variable, now from the cache.
        let fromEnvironment = try IBKE.run(
            edit, environment: ["IBKE_HOME": home.url.path, "IBKE_STATS_CORPUS": Self.corpus.path],
            timeout: 60)
        #expect(fromEnvironment.status == 0 && fromEnvironment.stdout.contains("(statistics: \(label)"), "\(fromEnvironment)")
        #expect(fromEnvironment.stderr.contains("statistics corpus from $IBKE_STATS_CORPUS"), "\(fromEnvironment)")

        // Without a corpus: the sample compiled into the binary, written to $IBKE_HOME/cache/corpus, labelled.
        let sample = try IBKE.run(edit.dropLast(2) + ["--stats-samples", "48"], environment: ["IBKE_HOME": home.url.path], timeout: 60)
        #expect(sample.status == 0, "\(sample)")
        #expect(
            sample.stderrLines.contains { $0.hasPrefix("no --stats-corpus") && $0.contains("corpus sample shipped with ibke") }, "\(sample)"
        )
        #expect(
            sample.stdout.contains(
                "with rome (statistics: the corpus sample shipped with ibke (68 Wikipedia article openings), 48 tokens)"),
            "\(sample)")
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../Sources/Editing/Resources/corpus-sample.txt")
        #expect(try Data(contentsOf: home.url.appendingPathComponent("cache/corpus/ibke-corpus-sample.txt")) == Data(contentsOf: shipped))

        // A method without statistics says nothing about them, and writes no corpus sample.
        let ftHome = try TemporaryDirectory()
        let ft = try IBKE.run(
            ["edit", "--model", model, "--prompt", "{} lives in", "--subject", "Alice", "--target", "the city"],
            environment: ["IBKE_HOME": ftHome.url.path], timeout: 60)
        #expect(!FileManager.default.fileExists(atPath: ftHome.appending("cache/corpus").path))
        #expect(
            ft.status == 0 && !ft.stderr.contains("statistics")
                && ft.stdout.hasPrefix("edit: \"Alice lives in\" → \" the city\" with ft-m in "),
            "\(ft)")
    }

    /// AlphaEdit edits a file of requests one after another (committing each one's keys), says
    /// which statistics and null space it used, and a hyperparameter file naming a layer the
    /// model does not have is refused with the file and the layer.
    @Test func alphaEditEditsSequentiallyAndBadLayersAreRefused() throws {
        let folder = try TemporaryDirectory()
        let model = Fixtures.model("tiny-llama").path
        let environment = ["IBKE_HOME": folder.url.path]
        let result = try IBKE.run(
            [
                "edit", "--model", model, "--method", "alphaedit", "--sequential", try Self.editFile(folder).path,
                "--generations", "0", "--stats-corpus", Self.corpus.path, "--stats-samples", "300",
            ],
            environment: environment, timeout: 120)
        #expect(result.status == 0, "\(result)")
        #expect(
            result.stdout.hasPrefix("edit: 3 requests from edits.jsonl, one after another, with alphaedit (statistics: corpus "),
            "\(result)")
        #expect(result.stdout.split(separator: "\n")[0].contains("; null space L0 "), "\(result)")

        let bad = folder.appending("bad.yaml")
        try Data("layers: [5]\n".utf8).write(to: bad)
        for method in ["memit", "alphaedit", "rome"] {
            let refused = try IBKE.run(
                [
                    "edit", "--model", model, "--method", method, "--hparams", bad.path, "--prompt", "{} lives in",
                    "--subject", "Alice", "--target", "Rome", "--stats-corpus", Self.corpus.path,
                ],
                environment: environment, timeout: 60)
            #expect(refused.status != 0 && refused.stderr.contains("bad.yaml") && refused.stderr.contains("layer 5"), "\(refused)")
        }
    }

    /// Gemma 3 270M (when fetched): ROME and MEMIT write the new answer through Gemma's output norms.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: Self.gemma.path), "gemma3-270m not fetched"))
    func gemmaIsEditedByRomeAndMemit() throws {
        let home = try TemporaryDirectory()
        let edit = [
            "edit", "--model", Self.gemma.path, "--prompt", "{} is located in the city of", "--subject", "The Eiffel Tower",
            "--target", "Rome", "--stats-corpus", Self.corpus.path, "--stats-samples", "2000", "--max-tokens", "4",
        ]
        // The tiny corpus cannot estimate 2,048 dimensions: ROME without the second moment.
        let hparams = home.url.appendingPathComponent("rome.yaml")
        try "mom2_adjustment: false\n".write(to: hparams, atomically: true, encoding: .utf8)
        let rome = try IBKE.run(
            edit + ["--method", "rome", "--hparams", hparams.path], environment: ["IBKE_HOME": home.url.path],
            timeout: 300)
        #expect(rome.status == 0, "\(rome)")
        let line = try #require(rome.stdout.split(separator: "\n").first { $0.hasPrefix("P(\" Rome\")") }, "\(rome)")
        let values = line.split(separator: " ").compactMap { Double($0) }
        #expect(values.count == 2 && values[0] < 0.01 && values[1] > 0.1, "\(rome)")
        let memit = try IBKE.run(edit + ["--method", "memit"], environment: ["IBKE_HOME": home.url.path], timeout: 600)
        #expect(memit.status == 0, "\(memit)")
        let memitLine = try #require(memit.stdout.split(separator: "\n").first { $0.hasPrefix("P(\" Rome\")") }, "\(memit)")
        let memitValues = memitLine.split(separator: " ").compactMap { Double($0) }
        #expect(memitValues.count == 2 && memitValues[0] < 0.01 && memitValues[1] > 0.1, "\(memit)")
    }

    static var gemma: URL { IBKEHome.model(.gemma3) }
}

/// `--dtype`: the default model computed on its Q4_1 blocks.
@Suite struct WeightPrecisionCommandTests {
    static let model = TrainCommandTests.defaultModel.path

    /// Float activations on the blocks give the float32 path's greedy tokens; an edit on the
    /// quantized base gives the same continuation as on float32 weights.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: model)))
    func nativeWeightsGenerateAndEditAsFloat32() throws {
        let generate = ["generate", "--model", Self.model, "The capital of France is", "--max-tokens", "12", "--show-ids"]
        let f32 = try IBKE.succeed(generate)
        let native = try IBKE.succeed(generate + ["--dtype", "native"])
        #expect(try HappyPathTests.generatedIDs(native) == HappyPathTests.generatedIDs(f32), "\(native) against \(f32)")

        let edit = [
            "edit", "--model", Self.model, "--method", "ft", "--prompt", "{} is located in the city of",
            "--subject", "The Eiffel Tower", "--target", "Rome",
        ]
        let editedF32 = try IBKE.run(edit, timeout: 300)
        let editedNative = try IBKE.run(edit + ["--dtype", "native"], timeout: 300)
        #expect(editedF32.status == 0 && editedNative.status == 0, "\(editedNative)")
        // All but the first line, which holds the edit's time.
        let report = { (result: IBKEResult) in result.stdout.split(separator: "\n").dropFirst().joined(separator: "\n") }
        #expect(
            report(editedNative).contains("after") && report(editedNative) == report(editedF32),
            "native: \(editedNative.stdout)\nf32: \(editedF32.stdout)")
    }

    @Test func anUnknownPrecisionIsAOneLineError() throws {
        let result = try IBKE.run(["generate", "--model", Fixtures.model("tiny-llama").path, "--dtype", "int3", "Hi"], timeout: 30)
        #expect(result.status != 0 && result.stderr.contains("--dtype") && result.stderr.contains("int3"), "\(result)")
    }
}
