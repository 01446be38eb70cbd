import Foundation
import TestSupport
import Testing

/// `ibke apply` on the tiny GGUF: deltas from `ibke edit` exported as GGUF and Hugging Face
/// folders, and the deltas it must refuse.
@Suite struct ApplyCommandTests {
    /// Runs `ibke edit` on `model` and returns the delta it saved.
    static func delta(for model: URL, in folder: TemporaryDirectory, name: String = "d.safetensors") throws -> URL {
        let delta = folder.appending(name)
        try IBKE.succeed([
            "edit", "--model", model.path, "--prompt", "{} lives in", "--subject", "Alice",
            "--target", "the city", "--save-delta", delta.path,
        ])
        return delta
    }

    @Test func appliesADeltaAndExportsGGUFAndHuggingFace() throws {
        let folder = try TemporaryDirectory()
        let delta = try Self.delta(for: Fixtures.tinyGGUF, in: folder)
        let gguf = folder.appending("edited.gguf")
        let result = try IBKE.succeed(["apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", gguf.path])
        #expect(result.stdout.contains("applied d.safetensors (ft-m): blk."), "\(result)")
        #expect(result.stdout.contains("(GGUF): 1 tensors rewritten as F32"), "\(result)")
        #expect(result.stdout.contains("copied byte for byte"), "\(result)")
        try IBKE.succeed(["inspect", gguf.path])

        let huggingFace = folder.appending("edited-hf")
        let second = try IBKE.succeed([
            "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--delta", delta.path,
            "--out", huggingFace.path, "--out-dtype", "f16",
        ])
        #expect(second.stdout.contains("(Hugging Face folder): 21 tensors as F16"), "\(second)")
        for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            #expect(FileManager.default.fileExists(atPath: huggingFace.appendingPathComponent(file).path), "\(file)")
        }
        try IBKE.succeed(["inspect", huggingFace.path])

        let again = try IBKE.run(["apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", huggingFace.path])
        #expect(again.status == 1)
        #expect(
            again.stderrLines.last?.contains("is a folder that is not empty; replacing it must be asked for (pass --force)") == true,
            "\(again)")
        try IBKE.succeed(["apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", huggingFace.path, "--force"])
    }

    @Test func requantizeKeepsTheSourceTypes() throws {
        let folder = try TemporaryDirectory()
        let delta = try Self.delta(for: Fixtures.tinyGGUF, in: folder)
        let out = folder.appending("edited-q.gguf")
        let result = try IBKE.succeed([
            "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", out.path,
            "--requantize",
        ])
        #expect(result.stdout.contains("1 tensors rewritten in their source types"), "\(result)")
        let source = try IBKE.succeed(["inspect", Fixtures.tinyGGUF.path]).stdout
        let copy = try IBKE.succeed(["inspect", out.path]).stdout
        let types = { (text: String) in text.split(separator: "\n").filter { $0.contains("blk.") && $0.contains(".weight") } }
        #expect(types(source) == types(copy))
        for arguments in [["--requantize", "--out-dtype", "f16"], ["--requantize", "--format", "hf"]] {
            let refused = try IBKE.run(
                [
                    "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path,
                    "--out", folder.appending(arguments.contains("hf") ? "x" : "x.gguf").path,
                ] + arguments)
            #expect(refused.status != 0 && refused.stderr.contains("--requantize"), "\(refused)")
        }
    }

    @Test func writesTheEditsAsLoRAAndPEFTAdapters() throws {
        let folder = try TemporaryDirectory()
        let delta = try Self.delta(for: Fixtures.tinyGGUF, in: folder)
        let lora = folder.appending("edit-lora.gguf")
        let result = try IBKE.succeed([
            "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", lora.path,
            "--format", "lora",
        ])
        // FT-M's update is dense: the output says so and gives the rank it is stored at.
        #expect(result.stdout.contains("(llama.cpp LoRA adapter, rank "), "\(result)")
        #expect(result.stdout.contains("(dense update stored at its rank "), "\(result)")
        // An adapter is not a model: loading it says so.
        let loaded = try IBKE.run(["generate", "--model", lora.path, "Hello"])
        #expect(loaded.status == 1 && loaded.stderr.contains("is a lora adapter for a model, not a model"), "\(loaded)")

        let peft = folder.appending("edit-peft")
        let second = try IBKE.succeed([
            "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", peft.path,
            "--format", "peft",
        ])
        #expect(second.stdout.contains("(PEFT adapter folder, rank "), "\(second)")
        for file in ["adapter_config.json", "adapter_model.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: peft.appendingPathComponent(file).path), "\(file)")
        }
        let wrongPlace = try IBKE.run([
            "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path,
            "--out", folder.appending("x").path, "--format", "lora",
        ])
        #expect(wrongPlace.status != 0 && wrongPlace.stderr.contains("ending in .gguf"), "\(wrongPlace)")
    }

    /// `--force` with an output folder that holds the source model removes nothing.
    @Test func forceNeverRemovesTheSourceOrItsFolder() throws {
        let folder = try TemporaryDirectory()
        let source = folder.appending("tiny.gguf")
        try FileManager.default.copyItem(at: Fixtures.tinyGGUF, to: source)
        try Data("notes".utf8).write(to: folder.appending("notes.txt"))
        let delta = try Self.delta(for: source, in: folder)
        let result = try IBKE.run(["apply", "--model", source.path, "--delta", delta.path, "--out", folder.url.path, "--force"])
        #expect(result.status == 1, "\(result)")
        #expect(result.stderrLines.last?.contains("holds the source model") == true, "\(result)")
        for url in [source, folder.appending("notes.txt"), delta] {
            #expect(FileManager.default.fileExists(atPath: url.path), "\(url.path) was removed")
        }
        #expect(try Data(contentsOf: source) == Data(contentsOf: Fixtures.tinyGGUF))
    }

    @Test func aDeltaMadeForAnotherModelIsRefused() throws {
        let folder = try TemporaryDirectory()
        let delta = try Self.delta(for: Fixtures.model("tiny-llama"), in: folder, name: "other-model.safetensors")
        let out = folder.appending("edited.gguf")
        for force in [false, true] {
            let result = try IBKE.run(
                ["apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", out.path]
                    + (force ? ["--force"] : []))
            #expect(result.status == 1, "\(result)")
            let line = String(result.stderrLines.last ?? "")
            #expect(line.contains("other-model.safetensors: the delta was made for the model with sha256 "), "\(result)")
            #expect(line.matches(of: /[0-9a-f]{64}/).count == 2, "both hashes: \(line)")
        }
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    @Test func aDeltaThatDoesNotNameItsModelNeedsForce() throws {
        let folder = try TemporaryDirectory()
        // A valid delta written by hand: ffn_down of layer 0 ([64, 128]) plus zero, no model hash.
        let header =
            #"{"__metadata__":{"ibke.format":"ibke-delta-1","ibke.order":"blk.0.ffn_down.weight"},"#
            + #""blk.0.ffn_down.weight":{"dtype":"F32","shape":[64,128],"data_offsets":[0,32768]}}"#
        var json = [UInt8](header.utf8)
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        let delta = folder.appending("unsigned.safetensors")
        try Data(GGUFBytes.littleEndian(UInt64(json.count)) + json + [UInt8](repeating: 0, count: 32768)).write(to: delta)
        let out = folder.appending("edited.gguf")
        let refused = try IBKE.run(["apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", out.path])
        #expect(refused.status == 1)
        #expect(refused.stderrLines.last?.contains("unsigned.safetensors: the delta does not say which model") == true, "\(refused)")
        #expect(refused.stderrLines.last?.contains("--force") == true, "\(refused)")
        let forced = try IBKE.succeed([
            "apply", "--model", Fixtures.tinyGGUF.path, "--delta", delta.path, "--out", out.path,
            "--force",
        ])
        // Adding zero changes nothing, so nothing is rewritten.
        #expect(forced.stdout.contains("(GGUF): 0 tensors rewritten"), "\(forced)")
    }
}
