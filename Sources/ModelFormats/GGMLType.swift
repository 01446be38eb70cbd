/// A ggml tensor storage type, with the numbers GGUF files use (ggml.h `enum ggml_type`).
///
/// Every type ggml currently defines is listed, so a file's layout (tensor byte sizes) can be
/// checked even for types this package cannot dequantize; ``canDequantize`` says which ones it
/// can. Numbers ggml has retired (4, 5, 31–33, 36–38) are not cases: a file using them is
/// rejected as having an unknown type.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q8_1 = 9
    case q2_K = 10
    case q3_K = 11
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case q8_K = 15
    case iq2_XXS = 16
    case iq2_XS = 17
    case iq3_XXS = 18
    case iq1_S = 19
    case iq4_NL = 20
    case iq3_S = 21
    case iq2_S = 22
    case iq4_XS = 23
    case i8 = 24
    case i16 = 25
    case i32 = 26
    case i64 = 27
    case f64 = 28
    case iq1_M = 29
    case bf16 = 30
    case tq1_0 = 34
    case tq2_0 = 35
    case mxfp4 = 39
    case nvfp4 = 40
    case q1_0 = 41

    /// Elements per K-quant super-block (ggml's `QK_K`).
    static let qkK = 256

    /// The name ggml and gguf-py use ("Q4_1", "BF16", "IQ2_XXS").
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q8_1: "Q8_1"
        case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        case .iq2_XXS: "IQ2_XXS"
        case .iq2_XS: "IQ2_XS"
        case .iq3_XXS: "IQ3_XXS"
        case .iq1_S: "IQ1_S"
        case .iq4_NL: "IQ4_NL"
        case .iq3_S: "IQ3_S"
        case .iq2_S: "IQ2_S"
        case .iq4_XS: "IQ4_XS"
        case .i8: "I8"
        case .i16: "I16"
        case .i32: "I32"
        case .i64: "I64"
        case .f64: "F64"
        case .iq1_M: "IQ1_M"
        case .bf16: "BF16"
        case .tq1_0: "TQ1_0"
        case .tq2_0: "TQ2_0"
        case .mxfp4: "MXFP4"
        case .nvfp4: "NVFP4"
        case .q1_0: "Q1_0"
        }
    }

    public var description: String { name }

    /// Elements stored together in one block (1 for plain types, 32 or 256 for quantized ones).
    /// A row's length (`ne[0]`) must be a multiple of it.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_NL, .mxfp4: 32
        case .nvfp4: 64
        case .q1_0: 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_XXS, .iq2_XS, .iq3_XXS, .iq1_S,
            .iq3_S, .iq2_S, .iq4_XS, .iq1_M, .tq1_0, .tq2_0:
            Self.qkK
        }
    }

    /// Bytes of one block (gguf-py's `GGML_QUANT_SIZES`).
    public var bytesPerBlock: Int {
        let k = Self.qkK
        return switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .f64: 8
        case .i8: 1
        case .i16: 2
        case .i32: 4
        case .i64: 8
        case .q4_0: 2 + 16
        case .q4_1: 2 + 2 + 16
        case .q5_0: 2 + 4 + 16
        case .q5_1: 2 + 2 + 4 + 16
        case .q8_0: 2 + 32
        case .q8_1: 4 + 4 + 32
        case .q2_K: 2 + 2 + k / 16 + k / 4
        case .q3_K: 2 + k / 4 + k / 8 + 12
        case .q4_K: 2 + 2 + k / 2 + 12
        case .q5_K: 2 + 2 + k / 2 + k / 8 + 12
        case .q6_K: 2 + k / 2 + k / 4 + k / 16
        case .q8_K: 4 + k + k / 8
        case .iq2_XXS: 2 + k / 4
        case .iq2_XS: 2 + k / 4 + k / 32
        case .iq3_XXS: 2 + k / 4 + k / 8
        case .iq1_S: 2 + k / 8 + k / 16
        case .iq4_NL: 2 + 16
        case .iq3_S: 2 + k / 4 + k / 8 + k / 32 + 4
        case .iq2_S: 2 + k / 4 + k / 16
        case .iq4_XS: 2 + 2 + k / 2 + k / 64
        case .iq1_M: k / 8 + k / 16 + k / 32
        case .tq1_0: 2 + 4 * 13
        case .tq2_0: 2 + 64
        case .mxfp4: 1 + 16
        case .nvfp4: 4 + 32
        case .q1_0: 2 + 16
        }
    }

    /// Whether ``GGUFFile/readFloats(_:into:)`` can convert this type to float32.
    public var canDequantize: Bool {
        switch self {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
            .q2_K, .q3_K, .q4_K, .q5_K, .q6_K:
            true
        default:
            false
        }
    }
}
