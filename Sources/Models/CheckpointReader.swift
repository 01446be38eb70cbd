import Foundation
import ModelFormats
import TensorCore

/// Errors of turning a checkpoint into a model; each names the file and what was expected.
public enum ModelLoadError: Error, CustomStringConvertible, Equatable {
    case unsupportedArchitecture(String, file: String, supported: [String])
    case missingConfig(key: String, file: String)
    case invalidConfig(key: String, value: String, expected: String, file: String)
    case missingTensor(String, file: String)
    case shapeMismatch(tensor: String, expected: [Int], actual: [Int], file: String)
    case unexpectedTensors([String], file: String)
    case missingTokenizer(file: String, detail: String)
    case notAModel(file: String, detail: String)

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let a, let file, let supported):
            "\(file): unsupported architecture '\(a)' (supported: \(supported.joined(separator: ", ")))"
        case .missingConfig(let key, let file):
            "\(file): missing hyperparameter '\(key)'"
        case .invalidConfig(let key, let value, let expected, let file):
            "\(file): hyperparameter '\(key)' = \(value), expected \(expected)"
        case .missingTensor(let name, let file):
            "\(file): missing tensor '\(name)'"
        case .shapeMismatch(let name, let expected, let actual, let file):
            "\(file): tensor '\(name)' has wrong shape; expected \(expected), got \(actual)"
        case .unexpectedTensors(let names, let file):
            "\(file): unexpected tensors \(names.prefix(5).map { "'\($0)'" }.joined(separator: ", "))\(names.count > 5 ? " and \(names.count - 5) more" : "")"
        case .missingTokenizer(let file, let detail):
            "\(file): no tokenizer: \(detail)"
        case .notAModel(let file, let detail):
            "\(file): \(detail)"
        }
    }
}

/// Reads tensors from a checkpoint strictly: every tensor read must exist with the expected
/// shape, and ``finish(ignoring:)`` rejects tensors that nothing read.
struct CheckpointReader {
    let source: any TensorSource
    /// Whether matrices keep the file's blocks (``WeightPrecision/native``).
    let precision: WeightPrecision
    private(set) var used: Set<String> = []

    init(_ source: any TensorSource, precision: WeightPrecision = .float32) {
        self.source = source
        self.precision = precision
    }

    /// One checkpoint tensor `[rows, columns]` that is part of a matrix, stacked by rows.
    struct MatrixPart {
        let name: String
        let rows: Int
        /// Row `i` of the part is the tensor's row `rowOrder[i]` (undoing a converter's
        /// permutation); nil for the stored order.
        var rowOrder: [Int]? = nil
    }

    /// Reads a matrix `[rows, columns]`.
    mutating func matrix(_ name: String, _ shape: [Int]) throws -> WeightMatrix {
        try matrix([MatrixPart(name: name, rows: shape[0])], columns: shape[1])
    }

    /// Reads tensors stacked by rows into one matrix (a fused q/k/v or gate/up): kept as the
    /// file's blocks when ``precision`` is native and every part is in a format the kernels
    /// have, else float32.
    mutating func matrix(_ parts: [MatrixPart], columns: Int) throws -> WeightMatrix {
        for part in parts { try checkShape(part.name, [part.rows, columns]) }
        if precision.keepsBlocks, let blocks = quantizedMatrix(parts, columns: columns) {
            for part in parts { used.insert(part.name) }
            return WeightMatrix(blocks)
        }
        let total = parts.reduce(0) { $0 + $1.rows }
        let values = Tensor(uninitialized: [total, columns])
        var start = 0
        for part in parts {
            let destination = values.pointer + start * columns
            try read(part.name, [part.rows, columns], into: destination)
            if let order = part.rowOrder {
                let stored = Array(UnsafeBufferPointer(start: destination, count: part.rows * columns))
                stored.withUnsafeBufferPointer { stored in
                    for (i, r) in order.enumerated() {
                        (destination + i * columns).update(from: stored.baseAddress! + r * columns, count: columns)
                    }
                }
            }
            start += part.rows
        }
        return WeightMatrix(values)
    }

    /// The parts' blocks as one quantized matrix, or nil when a part is not in such blocks.
    /// Every segment points into the file: a reordered part becomes runs of evenly spaced rows.
    private func quantizedMatrix(_ parts: [MatrixPart], columns: Int) -> QuantizedMatrix? {
        var segments: [QuantizedMatrix.Segment] = []
        var owners: [AnyObject] = []
        for part in parts {
            guard let (format, bytes, owner) = source.quantizedBlocks(of: part.name),
                columns % format.blockSize == 0
            else { return nil }
            let rowBytes = columns / format.blockSize * format.bytesPerBlock
            guard bytes.count == rowBytes * part.rows, let base = bytes.baseAddress else { return nil }
            owners.append(owner)
            for run in Self.runs(part.rowOrder ?? [], rows: part.rows) {
                segments.append(.init(rows: run.count, format: format, bytes: base + run.first * rowBytes, rowStep: run.step))
            }
        }
        return QuantizedMatrix(columns: columns, segments: segments, owners: owners, integerActivations: precision == .nativeInt8)
    }

    /// `order` (all of `rows` in stored order when empty) as runs of rows `first, first + step, …`:
    /// GGUF's q/k interleaving is two runs of step 2 per head.
    static func runs(_ order: [Int], rows: Int) -> [(first: Int, step: Int, count: Int)] {
        guard !order.isEmpty else { return [(0, 1, rows)] }
        var result: [(first: Int, step: Int, count: Int)] = []
        var i = 0
        while i < order.count {
            var count = 1
            var step = 1
            if i + 1 < order.count, order[i + 1] > order[i] {
                step = order[i + 1] - order[i]
                count = 2
                while i + count < order.count && order[i + count] - order[i + count - 1] == step { count += 1 }
            }
            result.append((order[i], step, count))
            i += count
        }
        return result
    }

    var fileName: String { source.url.lastPathComponent }

    func has(_ name: String) -> Bool { source.shape(of: name) != nil }

    func checkShape(_ name: String, _ expected: [Int]) throws {
        guard let actual = source.shape(of: name) else {
            throw ModelLoadError.missingTensor(name, file: fileName)
        }
        // A vector stored as [1, n] (or [n, 1]) is accepted as [n]; nothing else is reshaped.
        let vectorAsMatrix = expected.count == 1 && actual.count == 2 && actual.contains(1) && actual.reduce(1, *) == expected[0]
        if actual != expected && !vectorAsMatrix {
            throw ModelLoadError.shapeMismatch(tensor: name, expected: expected, actual: actual, file: fileName)
        }
    }

    /// Reads a tensor of exactly `shape` into a new tensor.
    mutating func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
        try checkShape(name, shape)  // before allocating what the file may not hold
        let t = Tensor(uninitialized: shape)
        try read(name, shape, into: t.pointer)
        return t
    }

    /// Reads a tensor of `shape` to `destination` (row-major).
    mutating func read(_ name: String, _ shape: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        try checkShape(name, shape)
        try source.readFloats(name, into: UnsafeMutableBufferPointer(start: destination, count: shape.reduce(1, *)))
        used.insert(name)
    }

    /// Reads a tensor stored transposed (`[in, out]`, GPT-2's Conv1D) as `[out, in]`.
    mutating func readTransposed(
        _ name: String, _ shape: [Int], into destination: UnsafeMutablePointer<Float>
    ) throws {
        let stored = [shape[1], shape[0]]
        try checkShape(name, stored)
        let temporary = try tensor(name, stored)
        let rows = shape[0]
        let columns = shape[1]
        for i in 0..<columns {
            for o in 0..<rows { destination[o * columns + i] = temporary.pointer[i * rows + o] }
        }
    }

    /// Reads an optional tensor: nil if absent.
    mutating func optional(_ name: String, _ shape: [Int]) throws -> Tensor? {
        has(name) ? try tensor(name, shape) : nil
    }

    /// Marks a tensor as consumed without reading it into a model weight.
    mutating func consume(_ name: String) { used.insert(name) }

    /// Throws if the checkpoint holds tensors that were not read and are not ignored.
    func finish(ignoring isIgnored: (String) -> Bool = { _ in false }) throws {
        let extra = source.tensorNames.filter { !used.contains($0) && !isIgnored($0) }
        if !extra.isEmpty { throw ModelLoadError.unexpectedTensors(extra, file: fileName) }
    }
}
