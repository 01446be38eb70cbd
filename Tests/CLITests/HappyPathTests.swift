import Foundation
import Testing

@Suite("Commands on the tiny models")
struct HappyPathTests {
    @Test("inspect --json reports the architecture, the layer count and every tensor", arguments: Fixtures.allModels)
    func inspectJSON(_ model: ModelFixture) throws {
        let result = try IBKE.succeed(["inspect", model.path.path, "--json"])
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result)")
        let config = try #require(report["config"] as? [String: Any])
        let tensors = try #require(report["tensors"] as? [[String: Any]])
        let expectedArchitecture = model.name.hasPrefix("tiny-llama") ? "llama" : model.name.hasPrefix("tiny-qwen2") ? "qwen2" : "gpt2"
        #expect(config["architecture"] as? String == expectedArchitecture)
        #expect(config["layerCount"] as? Int == 2)
        #expect(config["vocabularySize"] as? Int == 300)
        #expect(report["file"] as? String == model.path.path)
        #expect(tensors.count == (try Self.storedTensorCount(model.path)))
        #expect(Set(tensors.compactMap { $0["name"] as? String }).count == tensors.count, "tensor names repeat")
        #expect(report["parameters"] as? Int == tensors.reduce(0) { $0 + (($1["shape"] as? [Int]) ?? []).reduce(1, *) })
        let tokenizer = try #require(report["tokenizer"] as? [String: Any])
        #expect(tokenizer["vocabularySize"] as? Int == 300)
        if model.path.pathExtension == "gguf" {
            #expect(report["format"] as? String == "gguf")
            let metadata = try #require(report["metadata"] as? [String: String])
            #expect(metadata["general.architecture"] == "\"llama\"")
            let types = Set(tensors.compactMap { $0["type"] as? String })
            #expect(types == ["F32", "F16", "Q8_0"], "\(types)")
        } else {
            #expect(report["format"] as? String == "hf")
        }
    }

    /// The tensor count as the file itself states it: the GGUF header's tensor count, or the
    /// safetensors header's entries.
    static func storedTensorCount(_ path: URL) throws -> Int {
        if path.pathExtension == "gguf" {
            let bytes = [UInt8](try Data(contentsOf: path).prefix(16))
            return (0..<8).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        }
        let file = [UInt8](try Data(contentsOf: path.appendingPathComponent("model.safetensors")))
        let length = (0..<8).reduce(0) { $0 | Int(file[$1]) << (8 * $1) }
        let header = try #require(try JSONSerialization.jsonObject(with: Data(file[8..<(8 + length)])) as? [String: Any])
        return header.keys.filter { $0 != "__metadata__" }.count
    }

    @Test("inspect prints a readable summary", arguments: Fixtures.allModels.filter { $0.name.hasPrefix("tiny-llama") })
    func inspectText(_ model: ModelFixture) throws {
        let result = try IBKE.succeed(["inspect", model.path.path])
        #expect(result.stdout.contains("architecture:  llama, 2 layers, hidden 64, FFN 128 (swiglu)"), "\(result)")
        #expect(result.stdout.contains("tensors (\(try Self.storedTensorCount(model.path))):"), "\(result)")
    }

    @Test("tokenize gives the token ids of the model's tokenizer.json", arguments: Fixtures.allModels)
    func tokenize(_ model: ModelFixture) throws {
        let sequences = try model.loadReference().sequences.filter { $0.text != nil }
        try #require(!sequences.isEmpty)
        for sequence in sequences {
            let text = try #require(sequence.text)
            let ids = try IBKE.succeed(["tokenize", "--model", model.path.path, "--ids-only", text])
            #expect(ids.stdout == sequence.input_ids.map(String.init).joined(separator: " ") + "\n", "\(text): \(ids)")

            // The table: one line per token, id first.
            let table = try IBKE.succeed(["tokenize", "--model", model.path.path, text])
            let rows = table.stdout.split(separator: "\n")
            #expect(rows.compactMap { $0.split(separator: "\t").first.flatMap { Int($0) } } == sequence.input_ids, "\(table)")
            #expect(table.stderr.contains("\(sequence.input_ids.count) tokens"), "\(table)")
        }
    }

    @Test("generate is greedy by default and reproduces PyTorch's greedy tokens", arguments: Fixtures.allModels)
    func greedyGeneration(_ model: ModelFixture) throws {
        for sequence in try model.loadReference().sequences {
            guard let text = sequence.text else { continue }
            let result = try IBKE.succeed([
                "generate", "--model", model.path.path, text, "--max-tokens", "\(sequence.greedy_ids.count)", "--show-ids",
            ])
            #expect(try Self.generatedIDs(result) == sequence.greedy_ids, "\(model.name) \"\(text)\": \(result)")
            #expect(result.stdout.hasSuffix("\n"))
        }
    }

    /// The ids of `--show-ids` (the `ids:` line on standard error).
    static func generatedIDs(_ result: IBKEResult) throws -> [Int] {
        let line = try #require(result.stderrLines.first { $0.hasPrefix("ids: ") }, "no ids line: \(result)")
        return line.dropFirst(5).split(separator: " ").compactMap { Int($0) }
    }

    @Test("generate with sampling and a fixed seed is reproducible")
    func seededSampling() throws {
        let model = Fixtures.model("tiny-llama").path
        let sample = { (seed: Int) in
            try IBKE.succeed([
                "generate", "--model", model, "Hello, world!", "--max-tokens", "12", "--temperature", "1.5",
                "--top-k", "100", "--top-p", "0.95", "--seed", "\(seed)", "--show-ids",
            ])
        }
        let first = try sample(7)
        let second = try sample(7)
        let other = try sample(8)
        let ids = try Self.generatedIDs(first)
        #expect(ids.count == 12 || ids.last == 1, "\(first)")
        #expect(try Self.generatedIDs(second) == ids)
        #expect(second.stdout == first.stdout)
        #expect(try Self.generatedIDs(other) != ids, "another seed should sample other tokens")
    }

    @Test("score --json has one entry per target token", arguments: Fixtures.allModels)
    func scoreJSON(_ model: ModelFixture) throws {
        let prompt = "The capital of France is"
        let target = " Paris, and Rome"
        let targetIDs = try IBKE.succeed(["tokenize", "--model", model.path.path, "--ids-only", "--no-special", target])
            .stdout.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        try #require(targetIDs.count > 1)
        let result = try IBKE.succeed(["score", "--model", model.path.path, "--prompt", prompt, "--target", target, "--json"])
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result)")
        let tokens = try #require(report["tokens"] as? [[String: Any]])
        #expect(tokens.compactMap { $0["id"] as? Int } == targetIDs)
        let logProbs = tokens.compactMap { ($0["logProb"] as? NSNumber)?.doubleValue }
        #expect(logProbs.count == targetIDs.count && logProbs.allSatisfy { $0 <= 0 })
        let total = try #require((report["totalLogProb"] as? NSNumber)?.doubleValue)
        #expect(abs(total - logProbs.reduce(0, +)) < 1e-3)
        #expect((report["topNext"] as? [Any])?.count == 5)
    }

    @Test("score prints one line per target token and the total")
    func scoreText() throws {
        let result = try IBKE.succeed([
            "score", "--model", Fixtures.tinyGGUF.path, "--prompt", "Hello,", "--target", " world!", "--top", "3",
        ])
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count >= 3, "\(result)")
        #expect(lines.contains { $0.hasPrefix("total log P = ") }, "\(result)")
        #expect(lines.last?.hasPrefix("top next tokens: ") == true, "\(result)")
    }
}

@Suite("Help")
struct HelpTests {
    /// Each command and what its help must mention.
    static let commands: [(arguments: [String], mentions: [String])] = [
        ([], ["model", "inspect", "tokenize", "generate", "score", "bench", "USAGE"]),
        (["model"], ["fetch", "list", "path"]),
        (["model", "fetch"], ["--force", "IBKE_HOME", "<name>", "qwen2.5-coder-0.5b", "gemma3-270m"]),
        (["model", "list"], ["USAGE"]),
        (["model", "path"], ["USAGE", "<name>"]),
        (["inspect"], ["<path>", "--json", "--model", "--threads"]),
        (["tokenize"], ["<text>", "--model", "--threads", "--ids-only", "--no-special"]),
        (
            ["generate"],
            [
                "<prompt>", "--model", "--threads", "--max-tokens", "--temperature", "--top-k", "--top-p",
                "--seed", "--chat", "--system", "--show-ids",
            ]
        ),
        (["score"], ["--model", "--threads", "--prompt", "--target", "--top", "--json"]),
        (["bench"], ["--model", "--threads", "--repeats", "--decode-tokens"]),
    ]

    @Test(
        "--help of ibke and of every subcommand exits 0 and lists its subcommands and options",
        arguments: commands.map(\.arguments))
    func help(_ arguments: [String]) throws {
        let mentions = Self.commands.first { $0.arguments == arguments }!.mentions
        for form in [arguments + ["--help"], ["help"] + arguments] {
            let result = try IBKE.succeed(form)
            #expect(result.stderr.isEmpty, "\(result)")
            for word in mentions {
                #expect(result.stdout.contains(word), "`ibke \(form.joined(separator: " "))` does not mention \(word)")
            }
        }
    }

    @Test("an unknown option is a usage error (exit 64) with the usage on standard error")
    func unknownOption() throws {
        let result = try IBKE.run(["generate", "--no-such-option", "x"])
        #expect(result.status == 64, "\(result)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("--no-such-option"), "\(result)")
    }

    @Test("an invalid option value is rejected before any model is loaded")
    func invalidValue() throws {
        let result = try IBKE.run(["generate", "--model", Fixtures.tinyGGUF.path, "--max-tokens", "0", "x"])
        #expect(result.status == 64, "\(result)")
        #expect(result.stderr.contains("--max-tokens must be positive"), "\(result)")
    }
}
