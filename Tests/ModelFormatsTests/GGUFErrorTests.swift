import Foundation
import TestSupport
import Testing

@testable import ModelFormats

/// Malformed files, built by corrupting the fixture or by hand, must throw a one-line
/// ``GGUFError`` that names the file and the problem, quickly and without crashing.
@Suite("GGUF malformed input")
struct GGUFErrorTests {
    let fixture: [UInt8]
    let directory: TemporaryDirectory

    init() throws {
        fixture = try [UInt8](Data(contentsOf: Fixtures.allTypesGGUF))
        directory = try TemporaryDirectory()
    }

    /// Writes `bytes` as `name`, opens it, and returns the error's description after checking
    /// that it is one line, names the file and contains every phrase.
    @discardableResult
    private func openError(
        _ bytes: [UInt8], as name: String, contains phrases: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> GGUFError {
        let url = try directory.write(bytes, to: name)
        let error = try #require(throws: GGUFError.self, sourceLocation: sourceLocation) {
            try GGUFFile(url: url)
        }
        let message = error.description
        #expect(message.hasPrefix("\(name): "), "\(message)", sourceLocation: sourceLocation)
        #expect(!message.contains("\n"), "\(message)", sourceLocation: sourceLocation)
        for phrase in phrases {
            #expect(
                message.contains(phrase), "'\(phrase)' not in: \(message)",
                sourceLocation: sourceLocation)
        }
        return error
    }

    /// Offset of tensor `name`'s info fields (n_dims, ne…, type, offset) in the fixture.
    private func tensorInfoOffset(_ name: String) throws -> Int {
        try GGUFBytes.offset(after: name, in: fixture)
    }

    @Test("wrong magic")
    func wrongMagic() throws {
        var bytes = fixture
        bytes[0] = UInt8(ascii: "X")
        try openError(bytes, as: "magic.gguf", contains: ["not a GGUF file", "58 47 55 46"])
        try openError([], as: "zero.gguf", contains: ["not a GGUF file", "none"])
        try openError(Array(fixture.prefix(3)), as: "three.gguf", contains: ["not a GGUF file"])
    }

    @Test("unsupported versions: v1, a future version, a big-endian file")
    func versions() throws {
        var bytes = fixture
        GGUFBytes.patch(&bytes, at: 4, u32: 1)
        try openError(bytes, as: "v1.gguf", contains: ["GGUF version 1 is not supported"])
        GGUFBytes.patch(&bytes, at: 4, u32: 4)
        try openError(bytes, as: "v4.gguf", contains: ["unsupported GGUF version 4"])
        GGUFBytes.patch(&bytes, at: 4, u32: UInt32(3).byteSwapped)
        try openError(bytes, as: "be.gguf", contains: ["big-endian"])
    }

    @Test("truncated header and metadata, at a few places, with the part being read")
    func truncated() throws {
        try openError(
            Array(fixture.prefix(6)), as: "t6.gguf",
            contains: ["truncated", "the version needs 4 bytes, but only 2 remain (file size 6)"])
        try openError(
            Array(fixture.prefix(20)), as: "t20.gguf",
            contains: ["truncated", "metadata key count"])
        let key = try GGUFBytes.offset(after: "test.float64", in: fixture)
        try openError(
            Array(fixture.prefix(key + 6)), as: "tkey.gguf",
            contains: ["truncated", "'test.float64'"])
        let info = try tensorInfoOffset("t.q5_k")
        try openError(
            Array(fixture.prefix(info + 10)), as: "tinfo.gguf", contains: ["truncated", "'t.q5_k'"])
    }

    @Test("every truncation of the fixture throws a GGUFError, never crashes")
    func everyPrefix() throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        let end = try file.tensorInfos.map { file.dataOffset + $0.offset + $0.byteCount }.max()
            .unwrap()
        // The parser's owner keeps the bytes its metadata arrays point into alive.
        let mapping = try MappedFile(url: Fixtures.allTypesGGUF)
        let all = mapping.bytes
        for length in 0..<end {
            var parser = GGUFHeaderParser(
                bytes: UnsafeRawBufferPointer(rebasing: all[0..<length]), file: "f", owner: mapping)
            #expect(throws: GGUFError.self, "prefix of \(length) bytes") { try parser.parse() }
        }
        // Only the padding after the last tensor may be cut.
        var parser = GGUFHeaderParser(
            bytes: UnsafeRawBufferPointer(rebasing: all[0..<end]), file: "f", owner: mapping)
        let parsed = try parser.parse()
        #expect(parsed.tensors == file.tensorInfos)
        #expect(parsed.metadata == file.metadata)
    }

    @Test("absurd counts and lengths fail fast without allocating")
    func absurdCounts() throws {
        let huge: UInt64 = 0x7FFF_FFFF_FFFF_FFF0
        var bytes = fixture
        GGUFBytes.patch(&bytes, at: 16, u64: huge)
        try openError(bytes, as: "nkv.gguf", contains: ["truncated", "\(huge) metadata entries"])

        bytes = fixture
        GGUFBytes.patch(&bytes, at: 8, u64: UInt64.max)
        try openError(bytes, as: "ntensors.gguf", contains: ["truncated", "tensor infos"])

        bytes = fixture
        GGUFBytes.patch(&bytes, at: 24, u64: UInt64.max)  // length of the first key
        try openError(bytes, as: "keylen.gguf", contains: ["truncated", "metadata entry #0"])

        // The count of test.array.strings: after the key, value type (4) and element type (4).
        let array = try GGUFBytes.offset(after: "test.array.strings", in: fixture) + 8
        bytes = fixture
        GGUFBytes.patch(&bytes, at: array, u64: huge)
        try openError(
            bytes, as: "arraylen.gguf", contains: ["truncated", "array 'test.array.strings'"])

        // Arrays nested 100 deep would recurse 100 times: rejected at depth 8.
        var b = GGUFBytes()
        b.header(tensors: 0, keys: 1)
        b.string("deep")
        b.u32(9)
        for _ in 0..<100 {
            b.u32(9)
            b.u64(1)
        }
        try openError(b.bytes, as: "deep.gguf", contains: ["'deep'", "nested more than 8 deep"])
    }

    @Test("tensor data past the end of the file")
    func dataPastEnd() throws {
        let info = try tensorInfoOffset("t.q4_1")
        // n_dims (4) + 2 × ne (16) + type (4), then the offset.
        var bytes = fixture
        GGUFBytes.patch(&bytes, at: info + 24, u64: 1 << 20)
        let error = try openError(
            bytes, as: "offset.gguf",
            contains: [
                "tensor 't.q4_1' data (offset",
                "160 bytes) extends past end of file (size \(fixture.count))",
            ])
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        #expect(
            error
                == .dataPastEnd(
                    file: "offset.gguf", tensor: "t.q4_1", offset: file.dataOffset + (1 << 20),
                    size: 160,
                    fileSize: fixture.count))

        // Cutting the file inside the last tensor's data.
        let last = try #require(file.tensorInfos.last)
        let cut = Array(fixture.prefix(file.dataOffset + last.offset + last.byteCount - 1))
        try openError(
            cut, as: "cut.gguf", contains: ["tensor 't.q6_k' data", "extends past end of file"])

        // An offset near UInt64.max must not overflow.
        bytes = fixture
        GGUFBytes.patch(&bytes, at: info + 24, u64: UInt64.max - 31)
        try openError(
            bytes, as: "overflow.gguf",
            contains: ["tensor 't.q4_1' data", "extends past end of file"])
    }

    @Test("unknown quantization type")
    func unknownType() throws {
        let info = try tensorInfoOffset("t.q4_1")
        var bytes = fixture
        GGUFBytes.patch(&bytes, at: info + 20, u32: 99)
        let error = try openError(
            bytes, as: "type.gguf", contains: ["tensor 't.q4_1' has unknown GGML type 99"])
        #expect(error == .unknownType(file: "type.gguf", tensor: "t.q4_1", type: 99))
        GGUFBytes.patch(&bytes, at: info + 20, u32: 4)  // retired Q4_2
        try openError(bytes, as: "q4_2.gguf", contains: ["unknown GGML type 4"])
    }

    @Test("row length not a multiple of the block size")
    func notBlockMultiple() throws {
        let info = try tensorInfoOffset("t.q4_0")
        var bytes = fixture
        GGUFBytes.patch(&bytes, at: info + 4, u64: 48)  // ne[0] 64 → 48
        try openError(
            bytes, as: "block.gguf",
            contains: ["tensor 't.q4_0' row length 48 is not a multiple of the Q4_0 block size 32"])
        bytes = fixture
        let k = try tensorInfoOffset("t.q6_k")
        GGUFBytes.patch(&bytes, at: k + 4, u64: 384)
        try openError(
            bytes, as: "kblock.gguf", contains: ["row length 384", "Q6_K block size 256"])
    }

    @Test("duplicate tensor names")
    func duplicateTensor() throws {
        var bytes = fixture
        let info = try tensorInfoOffset("t.q5_0")
        bytes[info - 3] = UInt8(ascii: "4")  // "t.q5_0" → "t.q4_0"
        try openError(bytes, as: "dup.gguf", contains: ["duplicate tensor name 't.q4_0'"])
    }

    @Test("duplicate metadata keys, unknown value types, bad alignment, bad dimensions")
    func otherMalformations() throws {
        // "test.int32" → "test.int16" (same length) duplicates an earlier key.
        var bytes = fixture
        let int32Key = try GGUFBytes.offset(after: "test.int32", in: fixture)
        bytes[int32Key - 2] = UInt8(ascii: "1")
        bytes[int32Key - 1] = UInt8(ascii: "6")
        try openError(bytes, as: "dupkey.gguf", contains: ["duplicate metadata key 'test.int16'"])

        bytes = fixture
        let uint8Key = try GGUFBytes.offset(after: "test.uint8", in: fixture)
        GGUFBytes.patch(&bytes, at: uint8Key, u32: 13)  // value type of test.uint8
        try openError(
            bytes, as: "vtype.gguf", contains: ["metadata key 'test.uint8': unknown value type 13"])

        for (alignment, phrase) in [
            (0, "0 is not a positive power of two"), (48, "48 is not a positive power of two"),
        ] {
            var b = GGUFBytes()
            b.header(tensors: 0, keys: 1)
            b.string("general.alignment")
            b.u32(4)
            b.u32(UInt32(alignment))
            try openError(
                b.bytes, as: "align\(alignment).gguf", contains: ["'general.alignment'", phrase])
        }

        let info = try tensorInfoOffset("t.f32")
        bytes = fixture
        GGUFBytes.patch(&bytes, at: info, u32: 5)
        try openError(bytes, as: "dims.gguf", contains: ["tensor 't.f32'", "5 dimensions"])

        let q8 = try tensorInfoOffset("t.q8_0")
        bytes = fixture
        GGUFBytes.patch(&bytes, at: q8 + 24, u64: 16)  // not a multiple of 32
        try openError(
            bytes, as: "misaligned.gguf",
            contains: ["data offset 16 is not a multiple of the alignment 32"])

        bytes = fixture
        GGUFBytes.patch(&bytes, at: info + 4, u64: UInt64(Int.max))  // ne[0] × ne[1] overflows
        try openError(bytes, as: "overflowdims.gguf", contains: ["tensor 't.f32'", "overflows"])
    }
}

extension Optional {
    fileprivate func unwrap(sourceLocation: SourceLocation = #_sourceLocation) throws -> Wrapped {
        try #require(self, sourceLocation: sourceLocation)
    }
}
