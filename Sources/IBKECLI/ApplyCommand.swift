import ArgumentParser
import Editing
import Foundation
import Models

/// `ibke apply`: saved deltas applied to a model, written out as a model of its own.
struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply saved deltas to a model and export the edited model (GGUF, Hugging Face) or the edits as a LoRA adapter.",
        discussion: """
            Examples: ibke apply --delta eiffel.safetensors --out edited.gguf
                      ibke apply --delta eiffel.safetensors --out eiffel-lora.gguf --format lora
            Each delta must have been made for this model (its ibke.model_sha256 is checked). Without --format, \
            an --out path ending in .gguf gets a copy of the source GGUF in which only the edited tensors are \
            rewritten, and any other path gets a Hugging Face folder. --format lora writes a llama.cpp LoRA \
            adapter (a .gguf to load with `llama-cli --lora` on the unedited model), --format peft a PEFT \
            adapter folder for transformers and vLLM. The source model is never changed.
            """)

    @OptionGroup var model: ModelOptions
    @Option(
        name: .customLong("delta"),
        help: ArgumentHelp(
            "A delta file from `ibke edit --save-delta` (repeatable; applied in order).", valueName: "path"))
    var deltas: [String] = []
    @Option(help: ArgumentHelp("Where to write the edited model: a .gguf file or a folder.", valueName: "path"))
    var out: String
    @Option(
        help: ArgumentHelp(
            "What to write: gguf or hf (the edited model), lora or peft (the edits as an adapter). Default: gguf for a .gguf --out, hf otherwise.",
            valueName: "format"))
    var format: OutputFormat?
    @Option(name: .customLong("out-dtype"), help: "How rewritten tensors are stored: f32 or f16.")
    var outDtype: String = "f32"
    @Flag(help: "Store rewritten tensors of a GGUF export in their source type again (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, F32).")
    var requantize = false
    @Flag(help: "Apply deltas that do not name their model, and replace an existing --out.")
    var force = false

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case gguf, hf, lora, peft
    }

    func validate() throws {
        guard !deltas.isEmpty else { throw ValidationError("give at least one --delta") }
        guard outDtype == "f32" || outDtype == "f16" else { throw ValidationError("--out-dtype must be f32 or f16") }
        if requantize {
            guard outDtype == "f32" else { throw ValidationError("--requantize and --out-dtype: give one of them") }
            guard URL(fileURLWithPath: out).pathExtension.lowercased() == "gguf", format == nil || format == .gguf else {
                throw ValidationError("--requantize applies to GGUF exports (an --out path ending in .gguf)")
            }
        }
        let isGGUF = URL(fileURLWithPath: out).pathExtension.lowercased() == "gguf"
        switch format {
        case .gguf?, .lora?:
            guard isGGUF else { throw ValidationError("--format \(format!.rawValue) writes a file: give an --out path ending in .gguf") }
        case .hf?, .peft?:
            guard !isGGUF else {
                throw ValidationError("--format \(format!.rawValue) writes a folder: give an --out path not ending in .gguf")
            }
        case nil: break
        }
        if format == .lora || format == .peft, outDtype != "f32" {
            throw ValidationError("--out-dtype applies to model exports; adapters are written in f32")
        }
    }

    func run() throws {
        let destination = URL(fileURLWithPath: out)
        if let adapter = format.flatMap({ AdapterExport.Format(rawValue: $0.rawValue) }) {
            return try writeAdapter(adapter, to: destination)
        }
        // Refuse a taken destination before the work of loading and applying.
        try ModelExport.checkDestination(destination, source: try model.modelURL(), overwrite: force)
        let loaded = try model.load()
        for (url, delta) in try loadDeltas(for: loaded) {
            try loaded.transformer.apply(delta, source: url.lastPathComponent)
            let method = delta.metadata["ibke.method"].map { " (\($0))" } ?? ""
            print("applied \(url.lastPathComponent)\(method): \(Set(delta.parameters).map(\.name).sorted().joined(separator: ", "))")
        }
        let precision = requantize ? .source : ModelExport.Precision(rawValue: outDtype)!
        let result = try ModelExport.write(loaded, to: destination, precision: precision, overwrite: force)
        switch result.format {
        case .gguf:
            let copied = (loaded.ggufFile?.tensorNames.count ?? 0) - result.rewrittenTensors.count
            let stored = requantize ? "in their source types" : "as \(outDtype.uppercased())"
            print(
                "wrote \(out) (GGUF): \(result.rewrittenTensors.count) tensors rewritten \(stored) "
                    + "(\(result.rewrittenTensors.joined(separator: ", "))), \(copied) copied byte for byte")
        case .huggingFace:
            print("wrote \(out) (Hugging Face folder): \(result.rewrittenTensors.count) tensors as \(outDtype.uppercased())")
        }
    }

    /// The deltas, each checked against the model's hash.
    private func loadDeltas(for loaded: LanguageModel) throws -> [(URL, WeightDelta)] {
        let hash = try loaded.contentHash()
        return try deltas.map { path in
            let url = URL(fileURLWithPath: path)
            let delta = try WeightDelta.load(from: url)
            do {
                try delta.checkModel(hash: hash, source: url.lastPathComponent, allowUnverified: force)
            } catch DeltaError.unverifiedModel(let file) {
                throw CLIError("\(DeltaError.unverifiedModel(file: file)); pass --force to apply it anyway")
            }
            return (url, delta)
        }
    }

    private func writeAdapter(_ format: AdapterExport.Format, to destination: URL) throws {
        let loaded = try model.load()
        let result = try AdapterExport.write(
            try loadDeltas(for: loaded).map(\.1), of: loaded, to: destination,
            format: format, overwrite: force)
        let kind = format == .lora ? "llama.cpp LoRA adapter" : "PEFT adapter folder"
        print("wrote \(out) (\(kind), rank \(result.rank), alpha \(result.rank)):")
        for module in result.modules {
            let dense = module.denseRanks.map { "dense update stored at its rank \($0.rank) of \($0.of)" }
            print("  \(module.tensor): rank \(module.rank)" + (dense.isEmpty ? "" : " (" + dense.joined(separator: "; ") + ")"))
        }
    }
}
