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
    /// Whether the tensor is still the blocks of the file the model was loaded from (a matrix
    /// kept quantized that no edit wrote): an export can copy it without comparing values.
    public var isFileBlocks = false

    /// Rows of a canonical tensor (all of it by default), copied.
    static func rows(_ name: String, _ tensor: Tensor, _ range: Range<Int>? = nil) -> CheckpointTensor {
        let part = range.map { tensor.rows($0) } ?? tensor
        return CheckpointTensor(name: name, shape: part.shape, values: { part.scalars })
    }

    /// Rows of a canonical matrix (all of it by default), copied (dequantized when it is blocks).
    static func rows(_ name: String, _ matrix: WeightMatrix, _ range: Range<Int>? = nil) -> CheckpointTensor {
        let range = range ?? 0..<matrix.rows
        return CheckpointTensor(name: name, shape: [range.count, matrix.columns], values: { matrix.copyRows(range) },
                                isFileBlocks: matrix.isQuantized)
    }

    /// Rows of a canonical matrix with llama.cpp's per-head permutation applied.
    static func permutedRows(_ name: String, _ matrix: WeightMatrix, _ range: Range<Int>, heads: Int, headDim: Int) -> CheckpointTensor {
        CheckpointTensor(name: name, shape: [range.count, matrix.columns], values: {
            var values = matrix.copyRows(range)
            values.withUnsafeMutableBufferPointer {
                LlamaFamily.permuteRows($0.baseAddress!, heads: heads, headDim: headDim, columns: matrix.columns, undo: false)
            }
            return values
        }, isFileBlocks: matrix.isQuantized)
    }

    /// Rows of a canonical bias vector with llama.cpp's per-head permutation applied.
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
    static func transposed(_ name: String, _ matrix: WeightMatrix) -> CheckpointTensor {
        let (rows, columns) = (matrix.rows, matrix.columns)
        return CheckpointTensor(name: name, shape: [columns, rows], values: {
            let canonical = matrix.copyRows()
            var values = [Float](repeating: 0, count: rows * columns)
            for o in 0..<rows {
                for i in 0..<columns { values[i * rows + o] = canonical[o * columns + i] }
            }
            return values
        }, isFileBlocks: matrix.isQuantized)
    }
}

extension Transformer {
    /// Every tensor a checkpoint of this model holds, named and oriented as `naming` says: the
    /// loaders' work undone (fused q/k/v and gate/up split, llama.cpp's q/k permutation
    /// re-applied, GPT-2's Conv1D weights transposed back), so that exported files load into
    /// the same model.
    public func checkpointTensors(_ naming: CheckpointNaming) -> [CheckpointTensor] {
        config.architecture.family.checkpointTensors(weights, config: config, naming: naming)
    }
}
