import ArgumentParser
import Editing
import Foundation
import Models

/// `ibke apply`: saved deltas applied to a model, written out as a model of its own.
struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply saved deltas to a model and export the edited model as GGUF or a Hugging Face folder.",
        discussion: """
        Example: ibke apply --delta eiffel.safetensors --out edited.gguf
        Each delta must have been made for this model (its ibke.model_sha256 is checked). An --out path \
        ending in .gguf gets a copy of the source GGUF in which only the edited tensors are rewritten; any \
        other path gets a Hugging Face folder. The source model is never changed.
        """)

    @OptionGroup var model: ModelOptions
    @Option(name: .customLong("delta"), help: ArgumentHelp(
        "A delta file from `ibke edit --save-delta` (repeatable; applied in order).", valueName: "path"))
    var deltas: [String] = []
    @Option(help: ArgumentHelp("Where to write the edited model: a .gguf file or a folder.", valueName: "path"))
    var out: String
    @Option(name: .customLong("out-dtype"), help: "How rewritten tensors are stored: f32 or f16.")
    var outDtype: String = "f32"
    @Flag(help: "Apply deltas that do not name their model, and replace an existing --out.")
    var force = false

    func validate() throws {
        guard !deltas.isEmpty else { throw ValidationError("give at least one --delta") }
        guard ModelExport.Precision(rawValue: outDtype) != nil else { throw ValidationError("--out-dtype must be f32 or f16") }
    }

    func run() throws {
        let destination = URL(fileURLWithPath: out)
        // Refuse a taken destination before the work of loading and applying.
        try ModelExport.checkDestination(destination, source: try model.modelURL(), overwrite: force)
        let loaded = try model.load()
        let hash = try loaded.contentHash()
        for path in deltas {
            let url = URL(fileURLWithPath: path)
            let delta = try WeightDelta.load(from: url)
            do {
                try delta.checkModel(hash: hash, source: url.lastPathComponent, allowUnverified: force)
            } catch DeltaError.unverifiedModel(let file) {
                throw CLIError("\(DeltaError.unverifiedModel(file: file)); pass --force to apply it anyway")
            }
            try loaded.transformer.apply(delta, source: url.lastPathComponent)
            let method = delta.metadata["ibke.method"].map { " (\($0))" } ?? ""
            print("applied \(url.lastPathComponent)\(method): \(Set(delta.parameters).map(\.name).sorted().joined(separator: ", "))")
        }
        let precision = ModelExport.Precision(rawValue: outDtype)!
        let result = try ModelExport.write(loaded, to: destination, precision: precision, overwrite: force)
        switch result.format {
        case .gguf:
            let copied = (loaded.ggufFile?.tensorNames.count ?? 0) - result.rewrittenTensors.count
            print("wrote \(out) (GGUF): \(result.rewrittenTensors.count) tensors rewritten as \(outDtype.uppercased()) "
                + "(\(result.rewrittenTensors.joined(separator: ", "))), \(copied) copied byte for byte")
        case .huggingFace:
            print("wrote \(out) (Hugging Face folder): \(result.rewrittenTensors.count) tensors as \(outDtype.uppercased())")
        }
    }
}
