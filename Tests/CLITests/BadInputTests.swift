import Foundation
import TestSupport
import Testing

/// A broken checkpoint, built in a temporary folder from the tiny fixtures, and what the error
/// line must say about it.
struct BadInput: Sendable, CustomTestStringConvertible {
    let name: String
    /// Writes the broken input into the folder and returns the path to pass to `ibke`.
    let make: @Sendable (URL) throws -> URL
    /// Pieces of the problem's description the error line must contain (besides the file name).
    let problem: [String]

    var testDescription: String { name }

    static let all: [BadInput] =
        [
            BadInput(
                name: "GGUF truncated in the header",
                make: { folder in
                    try GGUFBytes.tiny().prefix(200).write(to: folder.appendingPathComponent("truncated.gguf"))
                }, problem: ["truncated"]),
            BadInput(
                name: "GGUF truncated in the vocabulary",
                make: { folder in
                    let bytes = try GGUFBytes.tiny()
                    let tokens = try #require(bytes.occurrences(of: GGUFBytes.string("tokenizer.ggml.tokens")).first)
                    return try bytes.prefix(tokens + 1000).write(to: folder.appendingPathComponent("truncated-vocabulary.gguf"))
                }, problem: ["truncated", "offset"]),
            BadInput(
                name: "GGUF truncated in the tensor infos",
                make: { folder in
                    let bytes = try GGUFBytes.tiny()
                    let info = try bytes.tensorInfo("blk.0.attn_q.weight")
                    return try bytes.prefix(info + 6).write(to: folder.appendingPathComponent("truncated-tensors.gguf"))
                }, problem: ["truncated", "offset"]),
            BadInput(
                name: "GGUF with a wrong magic",
                make: { folder in
                    var bytes = try GGUFBytes.tiny()
                    bytes.replaceSubrange(0..<4, with: Array("GGJT".utf8))
                    return try bytes.write(to: folder.appendingPathComponent("wrong-magic.gguf"))
                }, problem: ["not a GGUF file", "magic"]),
            BadInput(
                name: "GGUF whose tensor data runs past the end of the file",
                make: { folder in
                    try GGUFBytes.tiny().dropLast(1000).write(to: folder.appendingPathComponent("short-data.gguf"))
                }, problem: ["output.weight", "past end of file"]),
            BadInput(
                name: "GGUF tensor of an unknown quantization type",
                make: { folder in
                    var bytes = try GGUFBytes.tiny()
                    try bytes.setTensorType("blk.1.ffn_up.weight", to: 99)
                    return try bytes.write(to: folder.appendingPathComponent("unknown-type.gguf"))
                }, problem: ["blk.1.ffn_up.weight", "unknown GGML type 99"]),
            BadInput(
                name: "GGUF of an unsupported architecture",
                make: { folder in
                    var bytes = try GGUFBytes.tiny()
                    try bytes.replaceStringValue(key: "general.architecture", "llama", with: "mamba")
                    return try bytes.write(to: folder.appendingPathComponent("mamba.gguf"))
                }, problem: ["unsupported architecture 'mamba'"]),
            BadInput(
                name: "Hugging Face folder of an unsupported architecture",
                make: { folder in
                    try huggingFaceFolder(
                        in: folder, named: "tiny-mamba",
                        config: {
                            $0.replacingOccurrences(
                                of: #""model_type": "llama""#, with: #""model_type": "mamba""#)
                        })
                }, problem: ["config.json", "unsupported architecture 'mamba'"]),
            BadInput(
                name: "GGUF without tokenizer metadata",
                make: { folder in
                    var bytes = try GGUFBytes.tiny()
                    // Renames every tokenizer.ggml.* key (same length, so the file stays valid).
                    try bytes.replaceAll("tokenizer.ggml.", with: "tokenizer.none.")
                    return try bytes.write(to: folder.appendingPathComponent("no-tokenizer.gguf"))
                }, problem: ["no tokenizer", "tokenizer.ggml.model"]),
            BadInput(
                name: "Hugging Face folder without tokenizer.json",
                make: { folder in
                    try huggingFaceFolder(in: folder, named: "no-tokenizer", tokenizer: false)
                }, problem: ["no tokenizer", "tokenizer.json"]),
            BadInput(
                name: "safetensors header whose data_offsets run past the data",
                make: { folder in
                    try huggingFaceFolder(
                        in: folder, named: "lying-offsets",
                        safetensors: {
                            try SafetensorsBytes.rewritingOffsets(of: "model.norm.weight", in: $0) { begin, end in [begin, end + 4096] }
                        })
                }, problem: ["model.safetensors", "model.norm.weight", "data_offsets", "out of bounds"]),
            BadInput(
                name: "safetensors header whose data_offsets overlap another tensor",
                make: { folder in
                    try huggingFaceFolder(
                        in: folder, named: "overlapping-offsets",
                        safetensors: {
                            try SafetensorsBytes.rewritingOffsets(of: "model.norm.weight", in: $0) { begin, end in [0, end - begin] }
                        })
                }, problem: ["model.safetensors", "model.norm.weight"]),
            BadInput(
                name: "nonexistent path",
                make: { folder in
                    folder.appendingPathComponent("no-such-model.gguf")
                }, problem: ["no such file or folder"]),
            BadInput(
                name: "GGUF tensor of the wrong shape",
                make: { folder in
                    var bytes = try GGUFBytes.tiny()
                    try bytes.swapTensorDimensions("blk.0.ffn_down.weight")
                    return try bytes.write(to: folder.appendingPathComponent("wrong-shape.gguf"))
                }, problem: ["blk.0.ffn_down.weight", "wrong shape", "expected [64, 128], got [128, 64]"]),
            BadInput(
                name: "Hugging Face folder whose tensors do not fit config.json",
                make: { folder in
                    try huggingFaceFolder(
                        in: folder, named: "wrong-shape",
                        config: {
                            $0.replacingOccurrences(
                                of: #""intermediate_size": 128"#, with: #""intermediate_size": 96"#)
                        })
                }, problem: ["mlp.", "wrong shape", "expected [96, 64], got [128, 64]"]),
        ] + absurdDimensions

    /// Dimensions that are negative, zero, huge or that the weights do not hold: refused before
    /// anything is allocated (each once trapped or aborted in an allocation).
    static let absurdDimensions: [BadInput] = {
        let limit = "a size from 1 to 16777216"
        let huggingFace: [(String, String, String, [String])] = [
            ("tiny-llama", #""vocab_size": 300"#, #""vocab_size": 2147483648"#, ["vocab_size", limit]),
            ("tiny-llama", #""intermediate_size": 128"#, #""intermediate_size": 2147483648"#, ["intermediate_size", limit]),
            ("tiny-llama", #""num_key_value_heads": 2"#, #""num_key_value_heads": 2147483647"#, ["num_key_value_heads", limit]),
            ("tiny-llama", #""num_key_value_heads": 2"#, #""num_key_value_heads": -3"#, ["num_key_value_heads", limit]),
            ("tiny-llama", #""num_attention_heads": 4"#, #""num_attention_heads": -1"#, ["num_attention_heads", limit]),
            ("tiny-llama", #""num_attention_heads": 4"#, #""num_attention_heads": 0"#, ["num_attention_heads", limit]),
            ("tiny-llama", #""hidden_size": 64"#, #""hidden_size": 9007199254740993"#, ["hidden_size", limit]),
            ("tiny-llama", #""head_dim": 16"#, #""head_dim": 9007199254740993"#, ["head_dim", limit]),
            ("tiny-llama", #""vocab_size": 300"#, #""vocab_size": 3000000"#, ["dimensions", "fit the"]),
            ("tiny-llama", #""num_key_value_heads": 2"#, #""num_key_value_heads": 3"#, ["key-value head count", "divisor"]),
            ("tiny-gpt2", #""n_inner": null"#, #""n_inner": -1"#, ["n_inner", limit]),
            // Features the forward pass does not implement are refused, not ignored.
            ("tiny-llama", #""vocab_size": 300"#, #""vocab_size": 300, "sliding_window": 64"#, ["sliding_window", "not supported"]),
            ("tiny-llama", #""rope_type": "llama3""#, #""rope_type": "yarn""#, ["rope_type", "yarn"]),
        ]
        let configs = huggingFace.enumerated().map { i, change in
            BadInput(
                name: "config.json with \(change.2)",
                make: { folder in
                    try huggingFaceFolder(
                        in: folder, named: "absurd-\(i)", source: change.0,
                        config: { $0.replacingOccurrences(of: change.1, with: change.2) })
                }, problem: ["config.json"] + change.3)
        }
        let gguf: [(String, UInt64, [String])] = [
            ("llama.feed_forward_length", 1 << 31, ["llama.feed_forward_length", limit]),
            ("llama.attention.head_count_kv", (1 << 31) - 1, ["llama.attention.head_count_kv", limit]),
            ("llama.attention.head_count", 0, ["llama.attention.head_count", limit]),
            ("llama.block_count", 4096, ["dimensions", "fit the"]),
        ]
        return configs
            + gguf.map { key, value, problem in
                BadInput(
                    name: "GGUF with \(key) = \(value)",
                    make: { folder in
                        var bytes = try GGUFBytes.tiny()
                        try bytes.setIntegerValue(key: key, to: value)
                        return try bytes.write(to: folder.appendingPathComponent("absurd-\(key).gguf"))
                    }, problem: problem)
            }
    }()

    /// A copy of tiny-llama in `folder/name`: symbolic links to the committed files, except those
    /// that `config` or `safetensors` rewrite, and without tokenizer.json when `tokenizer` is false.
    static func huggingFaceFolder(
        in folder: URL, named name: String, source fixture: String = "tiny-llama", config: ((String) -> String)? = nil,
        safetensors: ((Data) throws -> Data)? = nil, tokenizer: Bool = true
    ) throws -> URL {
        let source = Fixtures.model(fixture)
        let model = folder.appendingPathComponent(name)
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: model, withIntermediateDirectories: true)
        let configText = try String(contentsOf: source.appendingPathComponent("config.json"), encoding: .utf8)
        if let config {
            let changed = config(configText)
            try #require(changed != configText, "the config.json edit matched nothing")
            try changed.write(to: model.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        } else {
            try fileManager.createSymbolicLink(
                at: model.appendingPathComponent("config.json"), withDestinationURL: source.appendingPathComponent("config.json"))
        }
        if let safetensors {
            try safetensors(Data(contentsOf: source.appendingPathComponent("model.safetensors")))
                .write(to: model.appendingPathComponent("model.safetensors"))
        } else {
            try fileManager.createSymbolicLink(
                at: model.appendingPathComponent("model.safetensors"),
                withDestinationURL: source.appendingPathComponent("model.safetensors"))
        }
        if tokenizer {
            try fileManager.createSymbolicLink(
                at: model.appendingPathComponent("tokenizer.json"),
                withDestinationURL: source.appendingPathComponent("tokenizer.json"))
        }
        return model
    }
}

@Suite("Bad input: one error line naming the file, exit code 1")
struct BadInputTests {
    /// Every command that loads a model must report the problem the same way.
    static func commands(_ path: String) -> [[String]] {
        [["inspect", path], ["generate", "--model", path, "--max-tokens", "2", "Hello"]]
    }

    @Test("a broken or missing model gives one error line naming the file and the problem", arguments: BadInput.all)
    func badInput(_ input: BadInput) throws {
        let folder = try TemporaryDirectory()
        let path = try input.make(folder.url)
        for command in Self.commands(path.path) {
            let result = try IBKE.run(command, timeout: 20)
            #expect(result.status == 1, "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
            let lines = result.stderrLines
            #expect(lines.count == 1, "expected exactly one line on standard error: \(result)")
            let line = String(lines.first ?? "")
            #expect(line.contains(path.lastPathComponent), "the error does not name \(path.lastPathComponent): \(line)")
            for piece in input.problem {
                #expect(line.contains(piece), "the error does not say \"\(piece)\": \(line)")
            }
        }
    }

    /// A tensor name with terminal escapes and line breaks is quoted as escapes, on one line.
    @Test func fileContentCannotControlTheTerminal() throws {
        let folder = try TemporaryDirectory()
        var bytes = try GGUFBytes.tiny()
        let name = "blk.1.ffn_up.weight"
        let hostile = "\u{1B}]0;x\u{07}\n\u{1B}[2J\u{9B}\u{202E}abc"
        try #require(hostile.utf8.count == name.utf8.count)
        try bytes.setTensorType(name, to: 99)
        try bytes.replaceAll(name, with: hostile)
        let path = try bytes.write(to: folder.appending("hostile.gguf"))
        let result = try IBKE.run(["inspect", path.path], timeout: 20)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderrLines.count == 1, "\(result)")
        #expect(
            !result.stderr.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x9B || $0.value == 0x202E },
            "\(result)")
        #expect(result.stderr.contains(#"\u{1B}]0;x\u{7}\u{A}\u{1B}[2J\u{9B}\u{202E}abc"#), "\(result)")
    }

    @Test("without --model and without the default model, commands say to run `ibke model fetch`")
    func missingDefaultModel() throws {
        let home = try TemporaryDirectory()
        for arguments in [
            ["generate", "Hello"], ["inspect"], ["tokenize", "Hello"],
            ["score", "--prompt", "Hello", "--target", " world"],
        ] {
            let result = try IBKE.run(arguments, environment: ["IBKE_HOME": home.url.path], timeout: 20)
            #expect(result.status == 1, "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
            #expect(result.stderrLines.count == 1, "\(result)")
            #expect(result.stderr.contains("ibke model fetch"), "\(result)")
            #expect(result.stderr.contains(home.url.path), "the message should say where the model was looked for: \(result)")
        }
    }
}

// MARK: - Building broken files

/// Byte-level edits of the tiny GGUF fixture. The edits keep every length, so the rest of the
/// file stays valid and only the intended problem is there.
struct GGUFBytes {
    var bytes: [UInt8]

    static func tiny() throws -> GGUFBytes {
        GGUFBytes(bytes: [UInt8](try Data(contentsOf: Fixtures.tinyGGUF)))
    }

    func prefix(_ count: Int) -> GGUFBytes { GGUFBytes(bytes: Array(bytes.prefix(count))) }
    func dropLast(_ count: Int) -> GGUFBytes { GGUFBytes(bytes: Array(bytes.dropLast(count))) }
    mutating func replaceSubrange(_ range: Range<Int>, with new: [UInt8]) { bytes.replaceSubrange(range, with: new) }

    func write(to url: URL) throws -> URL {
        try Data(bytes).write(to: url)
        return url
    }

    /// Offsets of every occurrence of `needle`.
    func occurrences(of needle: [UInt8]) -> [Int] {
        guard !needle.isEmpty, bytes.count >= needle.count else { return [] }
        return (0...(bytes.count - needle.count)).filter { start in
            bytes[start] == needle[0] && bytes[start..<(start + needle.count)].elementsEqual(needle)
        }
    }

    /// A GGUF string: little-endian UInt64 length, then UTF-8 bytes.
    static func string(_ s: String) -> [UInt8] { littleEndian(UInt64(s.utf8.count)) + Array(s.utf8) }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + i]) << (8 * i) }
        return value
    }

    mutating func write<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: Self.littleEndian(value))
    }

    /// Offset just past a tensor's name in its tensor info (`n_dims: u32, ne: [u64], type: u32, offset: u64` follow).
    func tensorInfo(_ name: String) throws -> Int {
        let found = occurrences(of: Self.string(name))
        try #require(found.count == 1, "tensor info of \(name) found \(found.count) times")
        return found[0] + Self.string(name).count
    }

    mutating func setTensorType(_ name: String, to type: UInt32) throws {
        let info = try tensorInfo(name)
        let dimensions = Int(read(UInt32.self, at: info))
        write(type, at: info + 4 + 8 * dimensions)
    }

    mutating func swapTensorDimensions(_ name: String) throws {
        let info = try tensorInfo(name)
        try #require(read(UInt32.self, at: info) == 2)
        let ne0 = read(UInt64.self, at: info + 4)
        let ne1 = read(UInt64.self, at: info + 12)
        write(ne1, at: info + 4)
        write(ne0, at: info + 12)
    }

    /// Replaces the string value of a metadata key (type 8) by another of the same length.
    mutating func replaceStringValue(key: String, _ old: String, with new: String) throws {
        precondition(old.utf8.count == new.utf8.count)
        let entry = Self.string(key) + Self.littleEndian(UInt32(8)) + Self.string(old)
        let found = occurrences(of: entry)
        try #require(found.count == 1, "metadata \(key) = \"\(old)\" found \(found.count) times")
        let value = found[0] + entry.count - old.utf8.count
        bytes.replaceSubrange(value..<(value + new.utf8.count), with: Array(new.utf8))
    }

    /// Sets an integer metadata value in place (its stored width kept: u32/i32 or u64/i64).
    mutating func setIntegerValue(key: String, to value: UInt64) throws {
        let found = occurrences(of: Self.string(key))
        try #require(found.count == 1, "metadata \(key) found \(found.count) times")
        let type = read(UInt32.self, at: found[0] + Self.string(key).count)
        let at = found[0] + Self.string(key).count + 4
        switch type {
        case 4, 5: write(UInt32(truncatingIfNeeded: value), at: at)
        case 10, 11: write(value, at: at)
        default: Issue.record("metadata \(key) is of type \(type), not an integer")
        }
    }

    /// Replaces every occurrence of `old` by `new`, of the same length.
    mutating func replaceAll(_ old: String, with new: String) throws {
        precondition(old.utf8.count == new.utf8.count)
        let found = occurrences(of: Array(old.utf8))
        try #require(!found.isEmpty, "\(old) not found")
        for start in found { bytes.replaceSubrange(start..<(start + new.utf8.count), with: Array(new.utf8)) }
    }
}

/// Edits of a safetensors file's JSON header; the data section is kept as it is.
enum SafetensorsBytes {
    static func rewritingOffsets(of tensor: String, in file: Data, _ change: (Int, Int) -> [Int]) throws -> Data {
        let bytes = [UInt8](file)
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[i]) << (8 * i) }
        let data = bytes[(8 + headerLength)...]
        var header = try #require(
            try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
        var entry = try #require(header[tensor] as? [String: Any], "no \(tensor) in the header")
        let offsets = try #require(entry["data_offsets"] as? [Int])
        entry["data_offsets"] = change(offsets[0], offsets[1])
        header[tensor] = entry
        var json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        return Data(GGUFBytes.littleEndian(UInt64(json.count)) + json + data)
    }
}
