import Foundation
import TensorCore
import TestSupport
import Testing

@testable import ModelFormats

/// The fixture tensors, one per dequantized type (see Scripts/golden/make_gguf_fixtures.py).
private let fixtureTensors = [
    "t.f32", "t.f32_3d", "t.f32_1d", "t.f16", "t.bf16", "t.q8_0", "t.q4_0", "t.q4_1", "t.q5_0",
    "t.q5_1", "t.q2_k", "t.q3_k", "t.q4_k", "t.q5_k", "t.q6_k",
]

/// The index and bits of the first element that differs, or nil when `actual` is bit-identical.
private func firstBitDifference(_ actual: [Float], _ expected: ArraySlice<Float>) -> String? {
    guard actual.count == expected.count else {
        return "count \(actual.count) != \(expected.count)"
    }
    for (i, (a, e)) in zip(actual, expected).enumerated() where a.bitPattern != e.bitPattern {
        let mismatches = zip(actual, expected).filter { $0.bitPattern != $1.bitPattern }.count
        return "element \(i): got \(a) (0x\(String(a.bitPattern, radix: 16))), expected \(e) "
            + "(0x\(String(e.bitPattern, radix: 16))); \(mismatches) of \(actual.count) differ"
    }
    return nil
}

@Suite("Dequantization, bit-exact against gguf-py 0.19.0")
struct DequantizeTests {
    @Test(
        "every fixture tensor matches gguf.quants.dequantize bit for bit", arguments: fixtureTensors
    )
    func bitExact(name: String) throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        let manifest = try Fixtures.manifest()
        let expected = try Fixtures.expectedValues()
        let entry = try #require(manifest.tensors.first { $0.name == name })
        #expect(file.typeName(of: name) == entry.type)
        let actual = try file.readFloats(name)
        let reference = expected[entry.start..<(entry.start + entry.count)]
        let difference = firstBitDifference(actual, reference)
        #expect(difference == nil, "\(name) (\(entry.type)): \(difference ?? "")")
    }

    @Test("the manifest covers exactly the tensors tested and every dequantizable type")
    func coverage() throws {
        let manifest = try Fixtures.manifest()
        #expect(manifest.tensors.map(\.name) == fixtureTensors)
        let covered = Set(manifest.tensors.map(\.type))
        let dequantizable = Set(GGMLType.allCases.filter(\.canDequantize).map(\.name))
        #expect(covered == dequantizable)
    }

    @Test("splitting into parallel chunks gives the same bits", arguments: [1, 32, 256, 1000])
    func chunked(chunkElements: Int) throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        for name in fixtureTensors {
            let info = try #require(file.tensorInfo(name))
            let source = try #require(file.rawBytes(of: name)?.baseAddress)
            var values = [Float](repeating: .nan, count: info.elementCount)
            values.withUnsafeMutableBufferPointer { out in
                info.type.dequantize(
                    source, into: out.baseAddress!, elementCount: out.count,
                    chunkElements: chunkElements)
            }
            let whole = try file.readFloats(name)
            #expect(
                values.map(\.bitPattern) == whole.map(\.bitPattern),
                "\(name), chunks of \(chunkElements)")
        }
    }

    @Test("readFloats checks the destination size, the name and the type")
    func readFloatsErrors() throws {
        let url = try Fixtures.allTypesGGUF
        let file = try GGUFFile(url: url)
        var small = [Float](repeating: 0, count: 10)
        let sizeError = try #require(throws: GGUFError.self) {
            try small.withUnsafeMutableBufferPointer { try file.readFloats("t.q4_1", into: $0) }
        }
        #expect(
            sizeError
                == .destinationSize(
                    file: "gguf_all_types.gguf", tensor: "t.q4_1", expected: 256, actual: 10))
        #expect(sizeError.description.contains("256 elements"))
        let missing = try #require(throws: GGUFError.self) { try file.readFloats("nope") }
        #expect(missing.description == "gguf_all_types.gguf: no tensor named 'nope'")

        // A valid but not dequantizable type (Q8_K) opens fine and fails only when read.
        var b = GGUFBytes()
        b.header(tensors: 1, keys: 0)
        b.string("iq")
        b.u32(1)
        b.u64(256)
        b.u32(GGMLType.q8_K.rawValue)
        b.u64(0)
        b.pad(to: 32)
        b.bytes += [UInt8](repeating: 0, count: GGMLType.q8_K.bytesPerBlock)
        let dir = try TemporaryDirectory()
        let q8k = try GGUFFile(url: dir.write(b.bytes, to: "q8k.gguf"))
        #expect(q8k.typeName(of: "iq") == "Q8_K")
        let unsupported = try #require(throws: GGUFError.self) { try q8k.readFloats("iq") }
        #expect(unsupported.description.contains("q8k.gguf: tensor 'iq' has type Q8_K"))
    }

    @Test("a large tensor is dequantized in parallel with the same result as one thread")
    func threadsAgree() throws {
        // 64 Ki Q4_1 blocks of pseudo-random bytes: 2 Mi elements, many chunks.
        let blocks = 1 << 16
        var bytes = [UInt8](repeating: 0, count: blocks * 20)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in bytes.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes[i] = UInt8(truncatingIfNeeded: state >> 56)
        }
        for b in 0..<blocks {  // keep fp16 scales finite: clear the top exponent bit
            bytes[20 * b + 1] &= 0x3F
            bytes[20 * b + 3] &= 0xBF
        }
        let count = blocks * 32
        var parallel = [Float](repeating: 0, count: count)
        var serial = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { src in
            parallel.withUnsafeMutableBufferPointer {
                GGMLType.q4_1.dequantize(
                    src.baseAddress!, into: $0.baseAddress!, elementCount: count)
            }
            serial.withUnsafeMutableBufferPointer {
                GGMLType.q4_1.dequantizeBlocks(
                    src.baseAddress!, into: $0.baseAddress!, blockCount: blocks)
            }
        }
        #expect(parallel.map(\.bitPattern) == serial.map(\.bitPattern))
    }
}
