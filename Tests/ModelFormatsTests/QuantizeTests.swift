import Foundation
import Testing

@testable import ModelFormats

/// `Quantize` against gguf-py's quantizers (ggml's reference, bit for bit), and its error bound.
@Suite struct QuantizeTests {
    struct Reference: Decodable {
        let values: [Float]
        let q4_0: String, q4_1: String, q5_0: String, q5_1: String, q8_0: String
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: try Fixtures.url("quantize_reference", "json")))
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test(arguments: [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0])
    func blocksMatchGGMLsReferenceQuantizer(_ type: GGMLType) throws {
        let reference = try Self.reference()
        let expected =
            switch type {
            case .q4_0: reference.q4_0
            case .q4_1: reference.q4_1
            case .q5_0: reference.q5_0
            case .q5_1: reference.q5_1
            default: reference.q8_0
            }
        let bytes = try #require(Quantize.quantize(reference.values, as: type))
        #expect(Self.hex(bytes) == expected)
    }

    @Test(arguments: [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0])
    func dequantizedValuesAreWithinHalfAStep(_ type: GGMLType) throws {
        let values = try Self.reference().values
        let bytes = try #require(Quantize.quantize(values, as: type))
        var back = [Float](repeating: 0, count: values.count)
        bytes.withUnsafeBytes { raw in
            back.withUnsafeMutableBufferPointer { type.dequantize(raw.baseAddress!, into: $0.baseAddress!, elementCount: values.count) }
        }
        let levels: Float =
            switch type {
            case .q4_0, .q4_1: 15
            case .q5_0, .q5_1: 31
            default: 254
            }
        for start in stride(from: 0, to: values.count, by: 32) {
            let block = values[start..<(start + 32)]
            let step = (block.max()! - block.min()!) / levels
            // Half a step, plus the scale's rounding to float16 (relative 2⁻¹¹ of the largest value).
            let bound = step * 0.5 + block.map(abs).max()! * 0.002 + 1e-7
            let worst = zip(block, back[start..<(start + 32)]).map { abs($0 - $1) }.max()!
            #expect(worst <= max(bound, step), "\(type) block \(start / 32): \(worst) > \(bound)")
        }
    }

    @Test func kQuantsAndPartialBlocksAreNotWritten() {
        #expect(Quantize.quantize([Float](repeating: 1, count: 256), as: .q4_K) == nil)
        #expect(Quantize.quantize([Float](repeating: 1, count: 31), as: .q8_0) == nil)
    }
}
