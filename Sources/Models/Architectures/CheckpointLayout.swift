import TensorCore

/// The tensor names and orientation of a checkpoint format.
public enum CheckpointNaming: Sendable {
    /// llama.cpp's names (`blk.0.attn_q.weight`), q/k rows permuted for `llama` GGUFs.
    case gguf
    /// transformers' names (`model.layers.0.self_attn.q_proj.weight`), GPT-2's linear weights
    /// stored `[in, out]` as its Conv1D modules hold them.
    case huggingFace
}

/// One tensor of a checkpoint, rebuilt from a model's canonical weights.
public struct CheckpointTensor: @unchecked Sendable {
    public let name: String
    /// Row-major, as the checkpoint stores it.
    public let shape: [Int]
    /// A fresh copy of the values in the checkpoint's order.
    public let values: () -> [Float]

    /// Rows of a canonical tensor (all of it by default), copied.
    static func rows(_ name: String, _ tensor: Tensor, _ range: Range<Int>? = nil) -> CheckpointTensor {
        let part = range.map { tensor.rows($0) } ?? tensor
        return CheckpointTensor(name: name, shape: part.shape, values: { part.scalars })
    }

    /// Rows of a canonical tensor (a matrix or a bias vector) with llama.cpp's per-head
    /// permutation applied.
    static func permutedRows(_ name: String, _ tensor: Tensor, _ range: Range<Int>, heads: Int, headDim: Int) -> CheckpointTensor {
        let part = tensor.rows(range)
        return CheckpointTensor(name: name, shape: part.shape, values: {
            var values = part.scalars
            let columns = part.count / range.count
            values.withUnsafeMutableBufferPointer {
                LlamaFamily.permuteRows($0.baseAddress!, heads: heads, headDim: headDim, columns: columns, undo: false)
            }
            return values
        })
    }

    /// A canonical `[out, in]` matrix stored `[in, out]`.
    static func transposed(_ name: String, _ tensor: Tensor) -> CheckpointTensor {
        let (rows, columns) = (tensor.shape[0], tensor.shape[1])
        return CheckpointTensor(name: name, shape: [columns, rows], values: {
            var values = [Float](repeating: 0, count: rows * columns)
            for o in 0..<rows {
                for i in 0..<columns { values[i * rows + o] = tensor.pointer[o * columns + i] }
            }
            return values
        })
    }
}

extension Transformer {
    /// Every tensor a checkpoint of this model holds, named and oriented as `naming` says: the
    /// loaders' work undone (fused q/k/v and gate/up split, llama.cpp's q/k permutation
    /// re-applied, GPT-2's Conv1D weights transposed back), so that exported files load into
    /// the same model.
    public func checkpointTensors(_ naming: CheckpointNaming) -> [CheckpointTensor] {
        switch (config.architecture, naming) {
        case ("gpt2", .gguf): GPT2.checkpointTensors(weights, config: config, names: .gguf)
        case ("gpt2", .huggingFace): GPT2.checkpointTensors(weights, config: config, names: .huggingFace)
        case (let architecture, .gguf):
            LlamaFamily.checkpointTensors(weights, config: config, names: .gguf,
                                          permuteQK: LlamaFamily.ggufPermutesQK(architecture: architecture))
        case (_, .huggingFace):
            LlamaFamily.checkpointTensors(weights, config: config, names: .huggingFace, permuteQK: false)
        }
    }
}

extension LlamaFamily {
    static func checkpointTensors(
        _ w: ModelWeights, config c: TransformerConfig, names: LlamaTensorNames, permuteQK: Bool
    ) -> [CheckpointTensor] {
        let q = c.queryWidth, kv = c.keyValueWidth, f = c.feedForwardSize
        // q and k rows, permuted per head when the format wants it.
        func qk(_ name: String, _ t: Tensor, _ range: Range<Int>, heads: Int) -> CheckpointTensor {
            permuteQK ? .permutedRows(name, t, range, heads: heads, headDim: c.headDim) : .rows(name, t, range)
        }
        var tensors: [CheckpointTensor] = [.rows(names.embedding, w.tokenEmbedding)]
        for (i, b) in w.blocks.enumerated() {
            let weight = { (part: String) in names.block(i, part) + names.weightSuffix }
            let bias = { (part: String) in names.block(i, part) + names.biasSuffix }
            tensors += [
                .rows(weight("attn_norm"), b.attentionNorm),
                qk(weight("attn_q"), b.qkv, 0..<q, heads: c.headCount),
                qk(weight("attn_k"), b.qkv, q..<(q + kv), heads: c.keyValueHeadCount),
                .rows(weight("attn_v"), b.qkv, (q + kv)..<(q + 2 * kv)),
            ]
            if let qkvBias = b.qkvBias {
                tensors += [
                    qk(bias("attn_q"), qkvBias, 0..<q, heads: c.headCount),
                    qk(bias("attn_k"), qkvBias, q..<(q + kv), heads: c.keyValueHeadCount),
                    .rows(bias("attn_v"), qkvBias, (q + kv)..<(q + 2 * kv)),
                ]
            }
            tensors += [
                .rows(weight("attn_output"), b.attentionOutput),
                .rows(weight("ffn_norm"), b.feedForwardNorm),
                .rows(weight("ffn_gate"), b.feedForwardInput, 0..<f),
                .rows(weight("ffn_up"), b.feedForwardInput, f..<(2 * f)),
                .rows(weight("ffn_down"), b.feedForwardDown),
            ]
        }
        tensors.append(.rows(names.outputNorm, w.outputNorm))
        if !c.tiedEmbeddings { tensors.append(.rows(names.output, w.output)) }
        return tensors
    }
}

extension GPT2 {
    /// GPT-2's tensor names in one format, and whether its linear weights are stored `[in, out]`.
    struct TensorNames: Sendable {
        var embedding: String, positions: String, outputNorm: String, output: String?
        var block: @Sendable (Int) -> String
        /// Attention norm, q/k/v, attention output, MLP norm, MLP up, MLP down.
        var modules: [String]
        var transposedLinear: Bool

        /// llama.cpp's: already `[out, in]`, q/k/v fused as `attn_qkv`.
        static let gguf = TensorNames(
            embedding: "token_embd", positions: "position_embd", outputNorm: "output_norm", output: "output",
            block: { "blk.\($0)." }, modules: ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"],
            transposedLinear: false)
        /// transformers' (`transformer.h.0.attn.c_attn.weight`, Conv1D `[in, out]`), whose head is always tied.
        static let huggingFace = TensorNames(
            embedding: "transformer.wte", positions: "transformer.wpe", outputNorm: "transformer.ln_f", output: nil,
            block: { "transformer.h.\($0)." }, modules: ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"],
            transposedLinear: true)
    }

    static func checkpointTensors(_ w: ModelWeights, config c: TransformerConfig, names: TensorNames) -> [CheckpointTensor] {
        let linear = { (name: String, t: Tensor) in names.transposedLinear ? CheckpointTensor.transposed(name, t) : .rows(name, t) }
        var tensors: [CheckpointTensor] = [.rows(names.embedding + ".weight", w.tokenEmbedding)]
        if let positions = w.positionEmbedding { tensors.append(.rows(names.positions + ".weight", positions)) }
        for (i, b) in w.blocks.enumerated() {
            let m = names.modules.map { names.block(i) + $0 }
            tensors += [
                .rows(m[0] + ".weight", b.attentionNorm), linear(m[1] + ".weight", b.qkv),
                linear(m[2] + ".weight", b.attentionOutput), .rows(m[3] + ".weight", b.feedForwardNorm),
                linear(m[4] + ".weight", b.feedForwardInput), linear(m[5] + ".weight", b.feedForwardDown),
            ]
            let biases = [b.attentionNormBias, b.qkvBias, b.attentionOutputBias, b.feedForwardNormBias,
                          b.feedForwardInputBias, b.feedForwardDownBias]
            tensors += zip(m, biases).compactMap { module, bias in bias.map { .rows(module + ".bias", $0) } }
        }
        tensors.append(.rows(names.outputNorm + ".weight", w.outputNorm))
        if let bias = w.outputNormBias { tensors.append(.rows(names.outputNorm + ".bias", bias)) }
        if !c.tiedEmbeddings, let output = names.output { tensors.append(.rows(output + ".weight", w.output)) }
        return tensors
    }
}
