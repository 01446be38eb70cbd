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
///
/// `@unchecked Sendable`: `values` captures weights that an edit may write; a caller reads it where
/// it holds the model (ModelHost's queue, or the one thread that loaded it).
public struct CheckpointTensor: @unchecked Sendable {
    public let name: String
    /// Row-major, as the checkpoint stores it.
    public let shape: [Int]
    /// A fresh copy of the values in the checkpoint's order.
    public let values: () -> [Float]
    /// Whether the tensor is still the blocks of the file the model was loaded from (a matrix
    /// kept quantized that no edit wrote): an export can copy it without comparing values.
    public var isFileBlocks = false
    /// The canonical matrix rows this tensor stores, and how; nil for vectors. What lets an
    /// update of those rows (a LoRA adapter's factors) be written in the checkpoint's layout.
    public var origin: Origin?

    public struct Origin: Sendable {
        /// How the checkpoint stores the rows.
        public enum Layout: Sendable, Equatable {
            /// As they are (`[rows, columns]`).
            case rows
            /// With llama.cpp's per-head row permutation (q and k of `llama` GGUFs).
            case permuted(heads: Int, headDim: Int)
            /// Transposed (`[columns, rows]`, GPT-2's Conv1D).
            case transposed
        }
        public let matrix: WeightMatrix
        public let rows: Range<Int>
        public let layout: Layout
    }

    /// Rows of a canonical tensor (all of it by default), copied.
    static func rows(_ name: String, _ tensor: Tensor, _ range: Range<Int>? = nil) -> CheckpointTensor {
        let part = range.map { tensor.rows($0) } ?? tensor
        return CheckpointTensor(name: name, shape: part.shape, values: { part.scalars })
    }

    /// Rows of a canonical matrix (all of it by default), copied (dequantized when it is blocks).
    static func rows(_ name: String, _ matrix: WeightMatrix, _ range: Range<Int>? = nil) -> CheckpointTensor {
        let range = range ?? 0..<matrix.rows
        return CheckpointTensor(
            name: name, shape: [range.count, matrix.columns], values: { matrix.copyRows(range) },
            isFileBlocks: matrix.isQuantized, origin: Origin(matrix: matrix, rows: range, layout: .rows))
    }

    /// Rows of a canonical matrix with llama.cpp's per-head permutation applied.
    static func permutedRows(_ name: String, _ matrix: WeightMatrix, _ range: Range<Int>, heads: Int, headDim: Int) -> CheckpointTensor {
        CheckpointTensor(
            name: name, shape: [range.count, matrix.columns],
            values: {
                var values = matrix.copyRows(range)
                values.withUnsafeMutableBufferPointer {
                    LlamaFamily.permuteRows($0.baseAddress!, heads: heads, headDim: headDim, columns: matrix.columns, undo: false)
                }
                return values
            }, isFileBlocks: matrix.isQuantized,
            origin: Origin(matrix: matrix, rows: range, layout: .permuted(heads: heads, headDim: headDim)))
    }

    /// Rows of a canonical bias vector with llama.cpp's per-head permutation applied.
    static func permutedRows(_ name: String, _ tensor: Tensor, _ range: Range<Int>, heads: Int, headDim: Int) -> CheckpointTensor {
        let part = tensor.rows(range)
        return CheckpointTensor(
            name: name, shape: part.shape,
            values: {
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
        return CheckpointTensor(
            name: name, shape: [columns, rows],
            values: {
                let canonical = matrix.copyRows()
                var values = [Float](repeating: 0, count: rows * columns)
                for o in 0..<rows {
                    for i in 0..<columns { values[i * rows + o] = canonical[o * columns + i] }
                }
                return values
            }, isFileBlocks: matrix.isQuantized, origin: Origin(matrix: matrix, rows: 0..<rows, layout: .transposed))
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

extension CheckpointTensor.Origin {
    /// The factors of a change to this tensor's rows, `Δ = b · a`, for an update
    /// `left · right` of the rows `part` of the canonical matrix (`left` `[part.count, r]`,
    /// `right` `[r, columns]`, `part` inside ``rows``): `b` `[rows.count, r]` with zeros for the
    /// rows outside `part` and the tensor's row permutation applied, `a` = `right`. Both are in
    /// the canonical orientation; a ``Layout/transposed`` tensor stores `(b · a)ᵀ`.
    public func updateFactors(left: Tensor, right: Tensor, part: Range<Int>) -> (b: [Float], a: [Float]) {
        let r = left.shape[1]
        precondition(
            left.shape[0] == part.count && right.shape == [r, matrix.columns]
                && part.lowerBound >= rows.lowerBound && part.upperBound <= rows.upperBound,
            "factors \(left.shape) · \(right.shape) for rows \(part) of \(rows)")
        var b = [Float](repeating: 0, count: rows.count * r)
        let source = left.scalars
        let start = (part.lowerBound - rows.lowerBound) * r
        b.replaceSubrange(start..<(start + source.count), with: source)
        if case .permuted(let heads, let headDim) = layout {
            b.withUnsafeMutableBufferPointer {
                LlamaFamily.permuteRows($0.baseAddress!, heads: heads, headDim: headDim, columns: r, undo: false)
            }
        }
        return (b, right.scalars)
    }
}
