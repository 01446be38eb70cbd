import Foundation
import TestSupport
import Testing

/// `ibke train`, then `ibke edit` and `ibke eval` with the trained editor, on the tiny Llama
/// and the committed zsRE fixtures.
@Suite struct TrainCommandTests {
    static let zsreTrain = "zsre:" + EvalCommandTests.datasets.appendingPathComponent("zsre_train.json").path
    static let tinySettings = [
        "--set", "design=bottleneck", "--set", "steps=4", "--set", "validate_every=2", "--set", "rank=8", "--set", "latent_size=4",
        "--set", "layers=[1]",
    ]

    @Test func trainResumeEditAndEval() throws {
        let folder = try TemporaryDirectory()
        let editor = folder.appending("ibke.safetensors")
        let model = Fixtures.model("tiny-llama").path
        let train =
            [
                "train", "--model", model, "--method", "ibke", "--train", Self.zsreTrain, "--val-count", "3",
                "--out", editor.path,
            ] + Self.tinySettings
        let first = try IBKE.run(train + ["--stop-at", "2"], timeout: 120)
        #expect(first.status == 0, "\(first)")
        #expect(first.stderr.contains("validation at step 2") && !first.stderr.contains("validation at step 4"), "\(first)")
        for suffix in [
            "", ".steps.csv", ".validation.csv", ".training.html", ".checkpoint/state.json", ".checkpoint/optimizer.safetensors",
        ] {
            #expect(FileManager.default.fileExists(atPath: editor.path + suffix), "no \(suffix)")
        }
        // The rest of the budget from the checkpoint.
        let resumed = try IBKE.run(train + ["--set", "beta=0.5", "--resume"], timeout: 120)
        #expect(resumed.status == 1 && resumed.stderr.contains("other settings"), "a changed β is a changed setting: \(resumed)")
        let same = try IBKE.run(train + ["--resume"], timeout: 120)
        #expect(same.status == 0 && same.stderr.contains("resuming at step 2") && same.stderr.contains("validation at step 4"), "\(same)")
        // Nothing left to train: --f16 only rewrites the best editor with float16 networks.
        let fullSize = try FileManager.default.attributesOfItem(atPath: editor.path)[.size] as! Int
        let half = try IBKE.run(train + ["--resume", "--f16"], timeout: 120)
        #expect(half.status == 0 && !half.stderr.contains("validation at step"), "\(half)")
        let halfSize = try FileManager.default.attributesOfItem(atPath: editor.path)[.size] as! Int
        #expect(halfSize < fullSize, "float16 networks: \(halfSize) bytes, float32: \(fullSize)")

        let edit = try Self.edit(model, method: "ibke", editor: editor)
        #expect(edit.status == 0, "\(edit)")
        #expect(edit.stdout.contains("after"), "\(edit)")

        let eval = try Self.eval(model, editor: editor, out: folder.appending("run"))
        #expect(eval.status == 0 && eval.stdout.contains("| ibke |"), "\(eval)")

        // The editor refuses another model, and is not a MEND editor.
        let otherModel = try Self.edit(Fixtures.tinyGGUF.path, method: "ibke", editor: editor)
        #expect(otherModel.status == 1 && otherModel.stderr.contains("trained for the model"), "\(otherModel)")
        let wrongMethod = try Self.edit(model, method: "mend", editor: editor)
        #expect(wrongMethod.status == 1 && wrongMethod.stderr.contains("not mend"), "\(wrongMethod)")
        let noEditor = try IBKE.run(
            [
                "edit", "--model", model, "--method", "mend",
                "--prompt", "{} lives in", "--subject", "Alice", "--target", "Paris",
            ], timeout: 60)
        #expect(noEditor.status == 1 && noEditor.stderr.contains("ibke train --method mend"), "\(noEditor)")
    }

    /// IBKE's default design, the learned value steps: they train, validate, save the best
    /// network, and `ibke edit`/`ibke eval --method ibke` use it through MEMIT's write; the
    /// flags of the hypernetwork trainer are refused by name.
    @Test func valueStepsTrainEditAndEval() throws {
        let folder = try TemporaryDirectory()
        let editor = folder.appending("ibke.safetensors")
        let model = Fixtures.model("tiny-llama").path
        let train = [
            "train", "--model", model, "--method", "ibke", "--train", Self.zsreTrain, "--val-count", "2", "--out", editor.path,
            "--set", "steps=2", "--set", "validate_every=1", "--set", "reads=2", "--set", "hidden=4",
            "--set", "batch=1",
        ]
        let trained = try IBKE.run(train, timeout: 120)
        #expect(trained.status == 0 && trained.stderr.contains("validation at request 2"), "\(trained)")
        #expect(FileManager.default.fileExists(atPath: editor.path + ".validation.csv"))
        // Stopped after the first request and resumed, the run ends with the network, Adam's
        // moments, best validation and curve of the uninterrupted one, bit for bit.
        let split = folder.appending("split.safetensors")
        let splitTrain = train.map { $0 == editor.path ? split.path : $0 }
        let first = try IBKE.run(splitTrain + ["--stop-at", "1"], timeout: 120)
        #expect(first.status == 0 && first.stderr.contains("stopped at request 1") && !first.stderr.contains("request 2"), "\(first)")
        let changed = try IBKE.run(splitTrain + ["--set", "lr=0.5", "--resume"], timeout: 60)
        #expect(changed.status == 1 && changed.stderr.contains("other settings"), "\(changed)")
        let resumed = try IBKE.run(splitTrain + ["--resume"], timeout: 120)
        #expect(resumed.status == 0 && resumed.stderr.contains("resuming at request 1"), "\(resumed)")
        #expect(resumed.stderr.contains("validation at request 2") && !resumed.stderr.contains("validation at request 1:"), "\(resumed)")
        // (The editor files differ in the command line they record; the checkpoint holds the
        // network, the moments and the loop's state.)
        for suffix in [".validation.csv", ".checkpoint/trainer.safetensors"] {
            let whole = try Data(contentsOf: URL(fileURLWithPath: editor.path + suffix))
            let parts = try Data(contentsOf: URL(fileURLWithPath: split.path + suffix))
            #expect(whole == parts, "\(suffix) differs between the whole run and the resumed one")
        }
        let unknown = try IBKE.run(train + ["--set", "rank=8"], timeout: 60)
        #expect(unknown.status == 1 && unknown.stderr.contains("rank"), "\(unknown)")

        let edit = try Self.edit(model, method: "ibke", editor: editor)
        #expect(edit.status == 0 && edit.stdout.contains("after"), "\(edit)")
        let eval = try Self.eval(model, editor: editor, out: folder.appending("run"))
        #expect(eval.status == 0 && eval.stdout.contains("| ibke |") && eval.stdout.contains("value_steps"), "\(eval)")
        let wrongMethod = try Self.edit(model, method: "mend", editor: editor)
        #expect(wrongMethod.status == 1 && wrongMethod.stderr.contains("not mend"), "\(wrongMethod)")
    }

    /// `ibke edit` of Alice → Paris on `model` with `method` and the trained `editor`.
    static func edit(_ model: String, method: String, editor: URL) throws -> IBKEResult {
        try IBKE.run(
            [
                "edit", "--model", model, "--method", method, "--editor", editor.path,
                "--prompt", "{} lives in", "--subject", "Alice", "--target", "Paris",
            ], timeout: 120)
    }

    /// `ibke eval` of the trained IBKE `editor` on two zsRE fixture records.
    static func eval(_ model: String, editor: URL, out: URL) throws -> IBKEResult {
        try IBKE.run(
            [
                "eval", "--model", model, "--methods", "ibke", "--editor", "ibke=" + editor.path,
                "--dataset", zsreTrain, "--limit", "2", "--out", out.path,
            ], timeout: 120)
    }

    /// The default model in the user's cache (`IBKE_HOME` or ~/.cache/ibke), when fetched.
    static let defaultModel = IBKEHome.model(.smolLM2)

    /// `ibke edit --method ibke|mend` works out of the box on the default model: the committed
    /// editors (Editors/SmolLM2-135M-Instruct) are found without `--editor` and write the target.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: defaultModel.path)), arguments: ["ibke", "mend"])
    func committedEditorsEditTheDefaultModel(method: String) throws {
        let result = try IBKE.run(
            [
                "edit", "--model", Self.defaultModel.path, "--method", method, "--prompt", "{} is located in the city of",
                "--subject", "The Eiffel Tower", "--target", "Rome",
            ], timeout: 120)
        #expect(result.status == 0, "\(result)")
        let row = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("P(\" Rome\")") }, "\(result)")
        let probabilities = row.split(separator: " ").compactMap { Double($0) }
        #expect(probabilities.count == 2 && probabilities[0] < 0.05 && probabilities[1] > 0.5, "\(row)")
    }

    /// Qwen2.5-Coder's committed IBKE editor (Editors/Qwen2.5-Coder-0.5B-Instruct) is found by
    /// the model's SHA-256 and writes the edit; the neighbouring fact keeps its answer.
    @Test(.enabled(if: IBKEHome.isFetched(.qwenCoder), "qwen2.5-coder-0.5b not fetched"))
    func committedIBKEEditorEditsQwen() throws {
        let result = try IBKE.run(
            [
                "edit", "--model", IBKEHome.model(.qwenCoder).path, "--method", "ibke", "--prompt",
                "{} is located in the city of", "--subject", "The Eiffel Tower", "--target", "Rome", "--max-tokens", "4",
            ], timeout: 600)
        #expect(result.status == 0 && result.stdout.contains("with ibke"), "\(result)")
        let row = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("P(\" Rome\")") }, "\(result)")
        let probabilities = row.split(separator: " ").compactMap { Double($0) }
        #expect(probabilities.count == 2 && probabilities[0] < 0.05 && probabilities[1] > 0.5, "\(row)")
        let lines = result.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let unrelated = try #require(lines.firstIndex { $0.hasPrefix("unrelated: The capital of France is") }, "\(result)")
        let after = try #require(lines[unrelated...].first { $0.hasPrefix("after:") }, "\(result)")
        #expect(after.contains("Paris") && !after.contains("Rome"), "\(after)")
    }

    /// The README's showcase with the committed IBKE editor: after the Eiffel Tower → Rome edit,
    /// "The capital of France is" still continues with Paris, and the edit exported as GGUF
    /// answers Rome.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: defaultModel.path)))
    func committedIBKEEditKeepsTheNeighbourAndExports() throws {
        let folder = try TemporaryDirectory()
        let delta = folder.appending("eiffel.safetensors")
        let edit = try IBKE.run(
            [
                "edit", "--model", Self.defaultModel.path, "--method", "ibke", "--prompt", "{} is located in the city of",
                "--subject", "The Eiffel Tower", "--target", "Rome", "--max-tokens", "4", "--save-delta", delta.path,
            ], timeout: 300)
        #expect(edit.status == 0, "\(edit)")
        let lines = edit.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let unrelated = try #require(lines.firstIndex { $0.hasPrefix("unrelated: The capital of France is") }, "\(edit)")
        let after = try #require(lines[unrelated...].first { $0.hasPrefix("after:") }, "\(edit)")
        #expect(after.contains("Paris") && !after.contains("Rome"), "\(after)")
        let gguf = folder.appending("eiffel.gguf")
        let apply = try IBKE.run(["apply", "--model", Self.defaultModel.path, "--delta", delta.path, "--out", gguf.path], timeout: 120)
        #expect(apply.status == 0, "\(apply)")
        let answer = try IBKE.run(
            ["generate", "--model", gguf.path, "The Eiffel Tower is located in the city of", "--max-tokens", "2"], timeout: 120)
        #expect(answer.status == 0 && answer.stdout.contains("Rome"), "\(answer)")
    }

    @Test func badTrainingInputIsRefused() throws {
        let folder = try TemporaryDirectory()
        let model = Fixtures.model("tiny-llama").path
        let base = ["train", "--model", model, "--out", folder.appending("e.safetensors").path, "--set", "design=bottleneck"]
        let cases: [([String], String)] = [
            (["--method", "rome", "--train", Self.zsreTrain], "--method"),
            (["--train", Self.zsreTrain, "--set", "bogus=1"], "bogus"),
            (["--train", Self.zsreTrain, "--set", "layers=[7]"], "layer 7"),
            (["--train", Self.zsreTrain, "--val-count", "50"], "--val-count"),
            (["--train", Self.zsreTrain, "--val-count", "3", "--resume"], "no checkpoint"),
            (["--train", Self.zsreTrain, "--val-count", "3", "--stop-at", "3"], "--stop-at 3"),
        ]
        for (arguments, expected) in cases {
            let result = try IBKE.run(base + arguments, timeout: 60)
            #expect(result.status != 0 && result.stderr.contains(expected), "\(result)")
        }
    }
}
