import Foundation
import ModelFormats
import Models
import TensorCore

/// Deltas written as a LoRA adapter for the unedited model: a rank-r update `ΔW = L·R` is
/// exactly LoRA's `B·A`, so the adapter on the base model gives the edited model's weights.
///
/// - ``Format/lora``: a llama.cpp adapter GGUF (`general.type = adapter`, `adapter.type =
///   lora`; tensors `<weight>.lora_a` `[r, in]` and `.lora_b` `[out, r]` under the base GGUF's
///   tensor names), loaded by `llama-cli --lora` or llama-cpp-python's `lora_path`.
/// - ``Format/peft``: a PEFT folder (`adapter_config.json`, `adapter_model.safetensors`) for
///   transformers and vLLM.
///
/// Every matrix gets the same rank r (the largest any matrix needs; the others are padded with
/// zeros, which changes nothing) and `alpha = r`, so both runtimes scale `B·A` by exactly 1.
/// Several updates of one matrix (sequential edits) are stacked along the rank. A dense update
/// (FT-M) is not low-rank: it is stored through its singular value decomposition at its
/// numerical rank, which the result reports.
public enum AdapterExport {
    public enum Format: String, Sendable, CaseIterable {
        case lora, peft

        /// Where the format expects to be written: a `.gguf` file, or a folder.
        var place: ModelExport.Format { self == .lora ? .gguf : .huggingFace }
    }

    /// One weight matrix the adapter changes.
    public struct Module: Sendable, Equatable {
        /// The base checkpoint's tensor name (`blk.4.ffn_down.weight`,
        /// `model.layers.4.mlp.down_proj.weight`).
        public let tensor: String
        /// The rank of its update before padding: the sum of its updates' ranks.
        public let rank: Int
        /// Numerical ranks of the dense updates stored through their SVD (empty when every
        /// update was low-rank), with the full rank `min(out, in)` each could have had.
        public let denseRanks: [(rank: Int, of: Int)]

        public static func == (a: Module, b: Module) -> Bool {
            a.tensor == b.tensor && a.rank == b.rank && a.denseRanks.elementsEqual(b.denseRanks, by: { $0 == $1 })
        }
    }

    public struct Result: Sendable {
        public let format: Format
        public let url: URL
        /// The adapter's rank r (and `alpha`).
        public let rank: Int
        public let modules: [Module]
    }

    /// Writes the deltas, applied in order to `model`'s unedited weights, as an adapter.
    ///
    /// `model` supplies the tensor names and layouts; its weights are not read or changed.
    /// The deltas must have been made for it (``WeightDelta/checkModel(hash:source:allowUnverified:)``).
    ///
    /// - Parameter overwrite: replace an earlier adapter export at `destination` (never the
    ///   source model or anything else).
    /// - Throws: ``ExportError`` for a destination that is taken or of the wrong kind and for
    ///   updates an adapter cannot hold; file-format errors for a failed write.
    @discardableResult
    public static func write(
        _ deltas: [WeightDelta], of model: LanguageModel, to destination: URL, format: Format, overwrite: Bool = false
    ) throws -> Result {
        guard ModelExport.Format(destination: destination) == format.place else {
            throw ExportError.unsupported(
                file: destination.path,
                detail: format == .lora
                    ? "a llama.cpp LoRA adapter is a .gguf file" : "a PEFT adapter is a folder (a path not ending in .gguf)")
        }
        try ModelExport.checkPlace(destination, format: format.place, source: model.url, overwrite: overwrite)
        let stacks = try updateStacks(deltas, of: model, naming: format == .lora ? .gguf : .huggingFace)
        guard !stacks.isEmpty else {
            throw ExportError.unsupported(file: destination.lastPathComponent, detail: "the deltas change no weight matrix")
        }
        let rank = stacks.map(\.rank).max()!
        switch format {
        case .lora: try writeLlamaCpp(stacks, rank: rank, model: model, to: destination)
        case .peft: try AtomicFolder.write(to: destination) { try writePEFT(stacks, rank: rank, model: model, into: $0) }
        }
        let modules = stacks.map { Module(tensor: $0.tensor.name, rank: $0.rank, denseRanks: $0.denseRanks) }
        return Result(format: format, url: destination, rank: rank, modules: modules)
    }

    /// The updates of one checkpoint tensor, stacked along the rank: `Δ = b · a` in the
    /// canonical orientation, `b` `[rows, rank]`, `a` `[rank, columns]`.
    struct Stack {
        let tensor: CheckpointTensor
        let origin: CheckpointTensor.Origin
        var b: [[Float]] = []  // one [rows, r_i] block per update
        var a: [Float] = []
        var ranks: [Int] = []
        var denseRanks: [(rank: Int, of: Int)] = []
        var rank: Int { ranks.reduce(0, +) }

        /// `b` with its blocks side by side and zero columns up to `width`, and `a` with zero rows.
        func padded(to width: Int) -> (b: [Float], a: [Float]) {
            let rows = origin.rows.count
            let columns = origin.matrix.columns
            var wide = [Float](repeating: 0, count: rows * width)
            var offset = 0
            for (block, r) in zip(b, ranks) {
                for row in 0..<rows {
                    for j in 0..<r { wide[row * width + offset + j] = block[row * r + j] }
                }
                offset += r
            }
            return (wide, a + [Float](repeating: 0, count: (width - rank) * columns))
        }
    }

    static func updateStacks(_ deltas: [WeightDelta], of model: LanguageModel, naming: CheckpointNaming) throws -> [Stack] {
        let tensors = model.transformer.checkpointTensors(naming)
        var stacks: [Stack] = []
        for entry in deltas.flatMap(\.entries) {
            let id = entry.parameter
            guard let (matrix, rows) = model.transformer.weights.matrix(id, config: model.transformer.config),
                let tensor = tensors.first(where: {
                    guard let origin = $0.origin else { return false }
                    return origin.matrix === matrix && origin.rows.lowerBound <= rows.lowerBound
                        && rows.upperBound <= origin.rows.upperBound
                }),
                let origin = tensor.origin
            else {
                throw ExportError.unsupported(
                    file: model.url.lastPathComponent, detail: "\(id.name) is not a weight matrix a LoRA adapter can change")
            }
            if naming == .gguf, origin.layout == .transposed {
                throw ExportError.unsupported(
                    file: model.url.lastPathComponent,
                    detail: "\(tensor.name) is stored transposed; llama.cpp adapters cannot hold it")
            }
            var denseRank: (rank: Int, of: Int)?
            let (left, right): (Tensor, Tensor)
            switch entry.update {
            case .lowRank(let l, let r): (left, right) = (l, r)
            case .dense(let d):
                (left, right) = try lowRankFactors(d)
                denseRank = (left.shape[1], min(d.shape[0], d.shape[1]))
            }
            let (b, a) = origin.updateFactors(left: left, right: right, part: rows)
            let index =
                stacks.firstIndex { $0.tensor.name == tensor.name }
                ?? {
                    stacks.append(Stack(tensor: tensor, origin: origin))
                    return stacks.count - 1
                }()
            stacks[index].b.append(b)
            stacks[index].a += a
            stacks[index].ranks.append(left.shape[1])
            if let denseRank { stacks[index].denseRanks.append(denseRank) }
        }
        return stacks.filter { $0.rank > 0 }
    }

    /// `d = left · right` at `d`'s numerical rank (singular values above
    /// `σ_max · max(m, n) · ε`, as NumPy's `matrix_rank`): `left = U_r diag(σ_r)`, `right = V_rᵀ`.
    static func lowRankFactors(_ d: Tensor) throws -> (left: Tensor, right: Tensor) {
        let (m, n) = (d.shape[0], d.shape[1])
        let (u, s, vt) = try DenseSolve.singularValueDecomposition(d)
        let tolerance = (s.first ?? 0) * Float(max(m, n)) * Float.ulpOfOne
        let r = s.prefix { $0 > tolerance }.count
        let k = s.count
        let left = Tensor(zeros: [m, r])
        let uValues = u.scalars
        for i in 0..<m {
            for j in 0..<r { left.pointer[i * r + j] = uValues[i * k + j] * s[j] }
        }
        return (left, vt.rows(0..<r).copy())
    }

    private static func writeLlamaCpp(_ stacks: [Stack], rank: Int, model: LanguageModel, to url: URL) throws {
        var tensors: [GGUFWriter.Tensor] = []
        for stack in stacks {
            let (b, a) = stack.padded(to: rank)
            // GGUF dimensions run fastest first: a [rank, in] is ne = [in, rank], b [out, rank] is [rank, out].
            tensors.append(.init(name: stack.tensor.name + ".lora_a", dimensions: [stack.origin.matrix.columns, rank], data: .f32(a)))
            tensors.append(.init(name: stack.tensor.name + ".lora_b", dimensions: [rank, stack.origin.rows.count], data: .f32(b)))
        }
        let metadata: [(key: String, value: GGUFValue)] = [
            ("general.architecture", .string(model.transformer.config.architecture.name)),
            ("general.type", .string("adapter")),
            ("general.name", .string("ibke edits of \(model.url.lastPathComponent)")),
            ("adapter.type", .string("lora")),
            ("adapter.lora.alpha", .float32(Float(rank))),
            (ModelExport.exportMarkerKey, .string("LoRA adapter written by ibke for \(model.url.lastPathComponent)")),
        ]
        try GGUFWriter.write(to: url, metadata: metadata, tensors: tensors)
    }

    private static func writePEFT(_ stacks: [Stack], rank: Int, model: LanguageModel, into folder: URL) throws {
        var entries: [SafetensorsWriter.Entry] = []
        var modules: [String] = []
        for stack in stacks {
            let module = String(stack.tensor.name.dropLast(".weight".count))
            modules.append(module)
            let (b, a) = stack.padded(to: rank)
            entries.append(.init(name: "base_model.model.\(module).lora_A.weight", shape: [rank, stack.origin.matrix.columns], floats: a))
            entries.append(.init(name: "base_model.model.\(module).lora_B.weight", shape: [stack.origin.rows.count, rank], floats: b))
        }
        try SafetensorsWriter.write(
            tensors: entries, metadata: ["format": "pt"],
            to: folder.appendingPathComponent("adapter_model.safetensors"))
        // GPT-2's Conv1D stores its weights transposed; PEFT calls that fan_in_fan_out.
        let transposed = stacks.contains { $0.origin.layout == .transposed }
        let config: JSONValue = .object([
            "peft_type": .string("LORA"),
            "task_type": .string("CAUSAL_LM"),
            "base_model_name_or_path": .string(model.url.lastPathComponent),
            "r": .int(rank),
            "lora_alpha": .int(rank),
            "lora_dropout": .double(0),
            "bias": .string("none"),
            "fan_in_fan_out": .bool(transposed),
            "target_modules": .array(modules.map { .string($0) }),
            "inference_mode": .bool(true),
            "use_rslora": .bool(false),
            "use_dora": .bool(false),
        ])
        try Data((config.serialized(indent: 2) + "\n").utf8).write(to: folder.appendingPathComponent("adapter_config.json"))
        let manifest: JSONValue = .object([
            "format": .string(ModelExport.exportMarkerKey), "adapter": .string("peft"),
            "source": .string(model.url.lastPathComponent),
        ])
        try Data((manifest.serialized(indent: 2) + "\n").utf8).write(to: folder.appendingPathComponent(ModelExport.manifestName))
    }
}
