import CQuantKernels

/// A GGUF block format that the quantized kernels compute with directly.
public enum QuantizedFormat: Int32, Sendable, CaseIterable {
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q8_0: 32
        case .q4_K, .q5_K, .q6_K: 256
        }
    }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q8_0: 34
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        }
    }
}

/// Products of quantized weight rows with float32 vectors, computed from the blocks
/// (`Sources/CQuantKernels`: portable C, and AVX2 and AVX-512 kernels chosen at run time).
public enum QuantizedKernels {
    /// An instruction set the kernels are written for.
    public enum InstructionSet: Int32, CaseIterable, Sendable, CustomStringConvertible {
        case portable = 0
        case avx2 = 2
        case avx512 = 3

        public var description: String {
            switch self {
            case .portable: "portable C"
            case .avx2: "AVX2"
            case .avx512: "AVX-512"
            }
        }
    }

    /// The instruction set this CPU runs the kernels with (`IBKE_SIMD=portable|avx2` caps it).
    public static var instructionSet: InstructionSet { InstructionSet(rawValue: ibke_quant_simd_level()) ?? .portable }

    /// `Σ w·x` with the kernels of `instructionSet` at most (for tests of each kernel).
    public static func dot(
        _ format: QuantizedFormat, row: UnsafeRawPointer, _ x: UnsafePointer<Float>, blocks: Int, using instructionSet: InstructionSet
    ) -> Float {
        ibke_quant_dot_at(instructionSet.rawValue, format.rawValue, row, x, Int32(blocks))
    }

    /// The same given `sums[b]`, the sum of each 32 activations (the offset terms of Q4_1, Q4_K).
    public static func dot(
        _ format: QuantizedFormat, row: UnsafeRawPointer, _ x: UnsafePointer<Float>, sums: UnsafePointer<Float>, blocks: Int,
        using instructionSet: InstructionSet
    ) -> Float {
        ibke_quant_dot_sums_at(instructionSet.rawValue, format.rawValue, row, x, sums, Int32(blocks))
    }

    /// `Σ w·x` over `blocks` blocks of `format` at `row` and `blocks · blockSize` floats at `x`.
    @inline(__always)
    public static func dot(_ format: QuantizedFormat, row: UnsafeRawPointer, _ x: UnsafePointer<Float>, blocks: Int) -> Float {
        ibke_quant_dot(format.rawValue, row, x, Int32(blocks))
    }

    /// The same with the portable kernels, whatever the CPU.
    public static func portableDot(_ format: QuantizedFormat, row: UnsafeRawPointer, _ x: UnsafePointer<Float>, blocks: Int) -> Float {
        ibke_quant_dot_portable(format.rawValue, row, x, Int32(blocks))
    }

    /// `y[r] = W[r] · x` for the `rows` rows of a `[rows, columns]` matrix in `format` at
    /// `weights` (each row whole blocks), in parallel over blocks of rows: the decode-time
    /// matrix-vector product, reading each weight byte once.
    public static func matrixVector(
        _ format: QuantizedFormat, weights: UnsafeRawPointer, rows: Int, columns: Int,
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>
    ) {
        precondition(columns % format.blockSize == 0, "\(columns) columns are not whole \(format) blocks")
        let blocks = columns / format.blockSize
        let rowBytes = blocks * format.bytesPerBlock
        // The sums of each 32 activations, once for all rows (the offset terms of Q4_1 and Q4_K).
        let sums = columns % 32 == 0 ? (0..<(columns / 32)).map { b in (0..<32).reduce(Float(0)) { $0 + x[32 * b + $1] } } : []
        let chunk = 64
        sums.withUnsafeBufferPointer { sums in
            parallelFor((rows + chunk - 1) / chunk) { c in
                for r in (c * chunk)..<min(rows, (c + 1) * chunk) {
                    y[r] =
                        sums.isEmpty
                        ? ibke_quant_dot(format.rawValue, weights + r * rowBytes, x, Int32(blocks))
                        : ibke_quant_dot_sums(format.rawValue, weights + r * rowBytes, x, sums.baseAddress!, Int32(blocks))
                }
            }
        }
    }

    /// Whether `format` has an integer kernel on quantized activations.
    public static func hasIntegerKernel(_ format: QuantizedFormat) -> Bool { ibke_quant_has_q8(format.rawValue) != 0 }

    /// `y[r] = W[r] · x̂` with x̂ the activations quantized to int8 per 32 elements (llama.cpp's
    /// Q8 blocks): integer products of codes, several times fewer instructions per weight than
    /// the float kernels, at the cost of x̂'s rounding (at most half a step per element).
    /// Formats without an integer kernel use the float one.
    public static func matrixVectorQuantizedActivations(
        _ format: QuantizedFormat, weights: UnsafeRawPointer, rows: Int, columns: Int,
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>
    ) {
        guard hasIntegerKernel(format) else {
            matrixVector(format, weights: weights, rows: rows, columns: columns, x, into: y)
            return
        }
        precondition(
            columns % 256 == 0 || (format.blockSize == 32 && columns % 32 == 0),
            "\(columns) columns are not whole \(format) blocks")
        let blocks = columns / format.blockSize
        let rowBytes = blocks * format.bytesPerBlock
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: columns)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: columns / 32)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: columns / 32)
        defer {
            codes.deallocate()
            scales.deallocate()
            sums.deallocate()
        }
        ibke_quantize_activations(x, Int32(columns), codes, scales, sums)
        let chunk = 64
        parallelFor((rows + chunk - 1) / chunk) { c in
            for r in (c * chunk)..<min(rows, (c + 1) * chunk) {
                y[r] = ibke_quant_dot_q8(format.rawValue, weights + r * rowBytes, codes, scales, sums, Int32(blocks))
            }
        }
    }

    /// Activations quantized for the integer kernels: codes, per-32 scales and scaled sums.
    public struct QuantizedActivations {
        public var codes: [Int8]
        public var scales: [Float]
        public var sums: [Float]

        public init(_ x: UnsafePointer<Float>, count: Int) {
            precondition(count % 32 == 0, "\(count) activations are not whole blocks of 32")
            codes = [Int8](repeating: 0, count: count)
            scales = [Float](repeating: 0, count: count / 32)
            sums = [Float](repeating: 0, count: count / 32)
            codes.withUnsafeMutableBufferPointer { q in
                scales.withUnsafeMutableBufferPointer { d in
                    sums.withUnsafeMutableBufferPointer {
                        ibke_quantize_activations(x, Int32(count), q.baseAddress, d.baseAddress, $0.baseAddress)
                    }
                }
            }
        }

        /// The value each code stands for, `code · scale`.
        public var values: [Float] { codes.indices.map { Float(codes[$0]) * scales[$0 / 32] } }
    }

    /// `Σ w·x̂` over `blocks` blocks at `row` (dispatching, or the portable C kernel).
    public static func dot(
        _ format: QuantizedFormat, row: UnsafeRawPointer, _ x: QuantizedActivations, blocks: Int,
        portable: Bool = false
    ) -> Float {
        x.codes.withUnsafeBufferPointer { q in
            x.scales.withUnsafeBufferPointer { d in
                x.sums.withUnsafeBufferPointer { s in
                    (portable ? ibke_quant_dot_q8_portable : ibke_quant_dot_q8)(
                        format.rawValue, row, q.baseAddress, d.baseAddress, s.baseAddress, Int32(blocks))
                }
            }
        }
    }
}
