import Editing
import Evaluation
import Foundation
import ModelFormats
import Models
import Tokenizers

// Coverage-guided fuzz targets for every reader of outside files, run by libFuzzer
// (`Scripts/fuzz TARGET SECONDS`; built only with IBKE_FUZZ set, see Package.swift). The target
// is chosen by $IBKE_FUZZ_TARGET; $IBKE_FUZZ_FIXTURES names Tests/ModelsTests/Fixtures, whose tiny
// model completes the inputs that need one. A reader may throw on any input; it must not crash,
// hang or read out of bounds (address sanitizer).

enum Target: String, CaseIterable {
    case gguf, safetensors, config, tokenizer, json, hparams, zsre, counterfact, mquake, jsonl, knowns, delta, editor
}

/// What every call shares: the target, a scratch folder, the tiny model.
final class Context: @unchecked Sendable {
    let target: Target
    let scratch: URL
    let fixtures: URL
    lazy var model: LanguageModel? = try? LanguageModel.load(fixtures.appendingPathComponent("tiny-llama"))

    init(target: Target) {
        let environment = ProcessInfo.processInfo.environment
        self.target = target
        fixtures = URL(fileURLWithPath: environment["IBKE_FUZZ_FIXTURES"] ?? "Tests/ModelsTests/Fixtures")
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        // A Hugging Face folder whose config.json is the input: the fixture's weights and tokenizer beside it.
        let folder = scratch.appendingPathComponent("hf")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in ["model.safetensors", "tokenizer.json"] {
            try? FileManager.default.copyItem(
                at: fixtures.appendingPathComponent("tiny-llama/\(file)"), to: folder.appendingPathComponent(file))
        }
    }

    func file(_ name: String, _ bytes: UnsafeRawBufferPointer) -> URL {
        let url = scratch.appendingPathComponent(name)
        try? Data(bytes).write(to: url)
        return url
    }

    func run(_ bytes: UnsafeRawBufferPointer) {
        switch target {
        case .gguf:
            guard let model = try? LanguageModel.load(file("in.gguf", bytes)) else { return }
            probe(model.tokenizer, bytes)
        case .safetensors:
            guard let file = try? SafetensorsFile(url: file("in.safetensors", bytes)) else { return }
            for name in file.tensorNames.prefix(64) { _ = try? file.readFloats(name) }
        case .config:
            _ = file("hf/config.json", bytes)
            _ = try? LanguageModel.load(scratch.appendingPathComponent("hf"))
        case .tokenizer:
            guard let tokenizer = try? Tokenizers.load(tokenizerJSON: file("tokenizer.json", bytes)) else { return }
            probe(tokenizer, bytes)
        case .json:
            _ = try? JSONValue.parse(Data(bytes))
        case .hparams:
            guard let config = model?.config else { return }
            for name in ["h.yaml", "h.json"] {
                let url = file(name, bytes)
                for method in EditingMethod.allCases where !method.isTrained {
                    _ = try? EditorRegistry.make(method, config: config, hyperparameters: url, statistics: nil)
                }
                if var reader = try? HyperparameterReader(contentsOf: url) {
                    _ = try? HypernetworkSettings(reading: &reader, design: .gatedMEND, config: config)
                }
            }
        case .zsre, .counterfact, .mquake, .jsonl:
            let kind: BenchmarkKind = [.zsre: .zsre, .counterfact: .counterfact, .mquake: .mquake, .jsonl: .custom][target]!
            _ = try? Dataset.load(DatasetSpec(kind: kind, path: file("data.json", bytes).path))
        case .knowns:
            _ = try? KnownFactsFile.load(path: file("knowns.json", bytes).path)
        case .delta:
            guard let delta = try? WeightDelta.load(from: file("d.safetensors", bytes)), let model else { return }
            if let applied = try? model.transformer.apply(delta) { applied.revert() }
        case .editor:
            guard let model else { return }
            _ = try? HypernetworkEditor.load(from: file("e.safetensors", bytes), for: model)
        }
    }

    /// Tokenizes and detokenizes text made of the input's bytes.
    func probe(_ tokenizer: any Tokenizer, _ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes.prefix(256), as: UTF8.self)
        _ = tokenizer.decode(tokenizer.encode(text), skipSpecialTokens: false)
    }
}

/// Set by the entry point before libFuzzer calls back.
nonisolated(unsafe) var context: Context?

/// One input: libFuzzer's callback.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    context?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// libFuzzer's driver, which takes the callback (`LLVMFuzzerRunDriver`, libFuzzer since LLVM 11).
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The entry point SwiftPM links an executable target to; it hands over to libFuzzer's driver
/// (whose own `main` is then not linked).
@_cdecl("IBKEFuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    guard let name = ProcessInfo.processInfo.environment["IBKE_FUZZ_TARGET"], let target = Target(rawValue: name) else {
        FileHandle.standardError.write(Data("set IBKE_FUZZ_TARGET to one of \(Target.allCases.map(\.rawValue))\n".utf8))
        return 2
    }
    context = Context(target: target)
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { fuzzOne($0, $1) }
}
