import Foundation
import TestSupport
import Testing

@testable import ModelFormats

@Suite("GGUF file structure and metadata")
struct GGUFFileTests {
    @Test("the fixture's header, tensor infos and data offset are read as written")
    func header() throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        let manifest = try Fixtures.manifest()
        #expect(file.version == 3)
        #expect(file.alignment == 32)
        #expect(file.dataOffset % 32 == 0)
        #expect(file.tensorNames == manifest.tensors.map(\.name))
        for expected in manifest.tensors {
            let info = try #require(file.tensorInfo(expected.name))
            #expect(info.dimensions == expected.ne, "\(expected.name)")
            #expect(info.shape == expected.shape, "\(expected.name)")
            #expect(file.shape(of: expected.name) == expected.shape)
            #expect(file.typeName(of: expected.name) == expected.type)
            #expect(info.elementCount == expected.count)
            #expect(info.offset % file.alignment == 0)
            #expect(
                info.byteCount == expected.count / info.type.blockSize * info.type.bytesPerBlock)
            #expect(file.rawBytes(of: expected.name)?.count == info.byteCount)
        }
        #expect(file.shape(of: "no.such.tensor") == nil)
        #expect(file.typeName(of: "no.such.tensor") == nil)
        #expect(file.tensorInfo("no.such.tensor") == nil)
    }

    @Test("metadata of every value type, including nested arrays, keeps file order")
    func metadata() throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        let m = file.metadata
        #expect(m["test.uint8"] == .uint8(200))
        #expect(m["test.int8"] == .int8(-100))
        #expect(m["test.uint16"] == .uint16(60000))
        #expect(m["test.int16"] == .int16(-30000))
        #expect(m["test.uint32"] == .uint32(4_000_000_000))
        #expect(m["test.int32"] == .int32(-2_000_000_000))
        #expect(m["test.float32"] == .float32(3.14159))
        #expect(m["test.bool_true"] == .bool(true))
        #expect(m["test.bool_false"] == .bool(false))
        #expect(m["test.string"] == .string("héllo wörld ✓"))
        #expect(m["test.empty_string"] == .string(""))
        #expect(m["test.uint64"] == .uint64(.max))
        #expect(m["test.uint64_small"] == .uint64(1 << 40))
        #expect(m["test.int64"] == .int64(-(1 << 40)))
        #expect(m["test.float64"] == .float64(2.718281828459045))
        #expect(
            m["test.array.strings"]
                == .array([.string("a"), .string("bc"), .string(""), .string("ünïcode")]))
        #expect(m["test.array.int32"] == .array([.int32(1), .int32(-2), .int32(3)]))
        #expect(m["test.array.uint8"] == .array([.uint8(0), .uint8(255), .uint8(7)]))
        #expect(m["test.array.uint64"] == .array([.uint64(1), .uint64(1 << 63)]))
        #expect(m["test.array.float64"] == .array([.float64(0.5), .float64(-1e300)]))
        #expect(m["test.array.float32"] == .array([.float32(0.25), .float32(-1.5)]))
        #expect(m["test.array.bool"] == .array([.bool(true), .bool(false), .bool(true)]))
        #expect(
            m["test.array.nested"]
                == .array([
                    .array([.int32(1), .int32(2)]), .array([.int32(3)]),
                    .array([.int32(4), .int32(5), .int32(6)]),
                ]))
        #expect(
            m["test.array.nested_strings"]
                == .array([.array([.string("x")]), .array([.string("y"), .string("z")])]))

        // File order: the writer puts general.architecture first, then keys as added.
        #expect(file.metadataKeys.first == "general.architecture")
        #expect(
            Array(file.metadataKeys.prefix(4)) == [
                "general.architecture", "test.uint8", "test.int8", "test.uint16",
            ])
        #expect(file.metadataKeys.count == m.count)
        #expect(Set(file.metadataKeys) == Set(m.keys))
    }

    @Test("convenience accessors convert and reject mismatched types")
    func accessors() throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        #expect(file.architecture == "testarch")
        #expect(file.string("general.name") == "tiny test model")
        #expect(file.int("testarch.block_count") == 2)
        #expect(file.architectureValue("context_length")?.intValue == 128)
        #expect(file.int("test.uint64") == nil)  // beyond Int.max
        #expect(file.int("test.uint64_small") == 1 << 40)
        #expect(file.int("test.string") == nil)
        #expect(file.double("test.float64") == 2.718281828459045)
        #expect(file.double("test.float32") == Double(Float(3.14159)))
        #expect(file.double("test.int16") == -30000)
        #expect(file.bool("test.bool_true") == true)
        #expect(file.bool("test.uint8") == nil)
        #expect(file.strings("test.array.strings") == ["a", "bc", "", "ünïcode"])
        #expect(file.strings("test.array.int32") == nil)
        #expect(file.ints("test.array.int32") == [1, -2, 3])
        #expect(file.array("test.array.nested")?.count == 3)
        #expect(file.string("missing.key") == nil)
    }

    @Test("arrays read from a file decode from its mapping, which they keep alive")
    func arraysOutliveTheirFile() throws {
        // The file object is gone before the arrays are read: their elements point into its
        // mapping, so they must hold it.
        let (strings, nested) = try { () throws -> (GGUFArray?, GGUFArray?) in
            let file = try GGUFFile(url: Fixtures.allTypesGGUF)
            return (file.array("test.array.strings"), file.array("test.array.nested_strings"))
        }()
        #expect(strings?.values == [.string("a"), .string("bc"), .string(""), .string("ünïcode")])
        #expect(strings?.count == 4)
        #expect(nested?.values.last?.arrayValue?.values == [.string("y"), .string("z")])
        // Written back, a decoded array is the same bytes as the one built in code.
        var decoded: [UInt8] = []
        decoded.appendGGUFEntry(key: "k", value: .array(strings!))
        var built: [UInt8] = []
        built.appendGGUFEntry(key: "k", value: .array(GGUFArray(strings!.values)))
        #expect(decoded == built)
    }

    @Test("metadata reads the same after the header's pages are released")
    func releasedHeader() throws {
        let file = try GGUFFile(url: Fixtures.allTypesGGUF)
        let before = file.array("test.array.strings")?.values
        file.releaseHeaderPages()
        #expect(file.array("test.array.strings")?.values == before)
        #expect(file.array("test.array.nested")?.count == 3)
    }

    @Test("a GGUF v2 file (same little-endian layout) is read like v3")
    func version2() throws {
        var bytes = try [UInt8](Data(contentsOf: Fixtures.allTypesGGUF))
        GGUFBytes.patch(&bytes, at: 4, u32: 2)
        let dir = try TemporaryDirectory()
        let file = try GGUFFile(url: dir.write(bytes, to: "v2.gguf"))
        #expect(file.version == 2)
        #expect(
            try file.readFloats("t.q4_1")
                == GGUFFile(url: Fixtures.allTypesGGUF).readFloats("t.q4_1"))
    }

    @Test("general.alignment moves the data section and is honoured")
    func customAlignment() throws {
        var b = GGUFBytes()
        b.header(tensors: 1, keys: 1)
        b.string("general.alignment")
        b.u32(4)  // uint32
        b.u32(64)
        b.string("w")
        b.u32(1)  // one dimension
        b.u64(3)
        b.u32(GGMLType.f32.rawValue)
        b.u64(0)
        b.pad(to: 64)
        let dataStart = b.bytes.count
        for v: Float in [1.5, -2, 0.25] { b.u32(v.bitPattern) }
        let dir = try TemporaryDirectory()
        let file = try GGUFFile(url: dir.write(b.bytes, to: "aligned64.gguf"))
        #expect(file.alignment == 64)
        #expect(file.dataOffset == dataStart)
        #expect(dataStart % 64 == 0)
        #expect(try file.readFloats("w") == [1.5, -2, 0.25])
    }

    @Test("a file with no tensors and no metadata is valid")
    func empty() throws {
        var b = GGUFBytes()
        b.header(tensors: 0, keys: 0)
        let dir = try TemporaryDirectory()
        let file = try GGUFFile(url: dir.write(b.bytes, to: "empty.gguf"))
        #expect(file.tensorNames.isEmpty)
        #expect(file.metadataKeys.isEmpty)
        #expect(file.architecture == nil)
    }

    @Test("GGMLType sizes match gguf-py's GGML_QUANT_SIZES for the dequantized types")
    func typeSizes() {
        let expected: [(GGMLType, Int, Int)] = [
            (.f32, 1, 4), (.f16, 1, 2), (.bf16, 1, 2), (.q4_0, 32, 18), (.q4_1, 32, 20),
            (.q5_0, 32, 22), (.q5_1, 32, 24), (.q8_0, 32, 34), (.q8_1, 32, 40), (.q2_K, 256, 84),
            (.q3_K, 256, 110), (.q4_K, 256, 144), (.q5_K, 256, 176), (.q6_K, 256, 210),
            (.q8_K, 256, 292),
        ]
        for (type, block, bytes) in expected {
            #expect(type.blockSize == block, "\(type)")
            #expect(type.bytesPerBlock == bytes, "\(type)")
        }
        #expect(GGMLType(rawValue: 30) == .bf16)
        #expect(GGMLType(rawValue: 4) == nil)  // retired Q4_2
        #expect(GGMLType.q4_1.name == "Q4_1")
    }
}

@Suite("Memory-mapped files")
struct MappedFileTests {
    @Test("maps a file's bytes, and an empty file as an empty buffer")
    func mapsBytes() throws {
        let dir = try TemporaryDirectory()
        let mapped = try MappedFile(url: dir.write([1, 2, 3, 250], to: "four.bin"))
        #expect(Array(mapped.bytes) == [1, 2, 3, 250])
        let empty = try MappedFile(url: dir.write([], to: "empty.bin"))
        #expect(empty.bytes.isEmpty)
    }

    @Test("released pages read back the same, and stop counting as resident (Linux)")
    func releasePages() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (0..<(8 * page)).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / page) }
        let dir = try TemporaryDirectory()
        let mapped = try MappedFile(url: dir.write(bytes, to: "pages.bin"))
        #expect(Array(mapped.bytes) == bytes)  // every page touched
        #if os(Linux)
        let before = try #require(try residentKilobytes(of: mapped))
        #expect(before >= 8 * page / 1024)
        #endif
        // Partial pages at either end stay; ranges past the ends are clamped; empty ones do nothing.
        mapped.releasePages(100..<(6 * page + 100))
        mapped.releasePages(-5..<0)
        mapped.releasePages((7 * page)..<(100 * page))
        mapped.releasePages(3..<3)
        #if os(Linux)
        let after = try #require(try residentKilobytes(of: mapped))
        #expect(after <= before - 6 * page / 1024, "\(before) kB resident before, \(after) kB after")
        #endif
        #expect(Array(mapped.bytes) == bytes)
    }

    #if os(Linux)
    /// The `Rss` of the mapping that holds `file`'s bytes, from /proc/self/smaps.
    private func residentKilobytes(of file: MappedFile) throws -> Int? {
        let start = UInt(bitPattern: file.bytes.baseAddress)
        // Read to the end: /proc files report a size of 0, which a read by size would trust.
        let handle = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps"))
        defer { try? handle.close() }
        let smaps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        var inMapping = false
        for line in smaps.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let low = UInt(line[..<dash], radix: 16) {
                inMapping = low == start
            } else if inMapping, line.hasPrefix("Rss:") {
                return Int(line.split(separator: " ")[1])
            }
        }
        return nil
    }
    #endif

    @Test("a missing file throws an error naming the path and the reason")
    func missing() throws {
        let url = URL(fileURLWithPath: "/nonexistent/dir/model.gguf")
        let error = try #require(throws: MappedFileError.self) { try MappedFile(url: url) }
        #expect(error.description.contains("/nonexistent/dir/model.gguf"))
        #expect(error.description.contains("No such file"))
        let ggufError = try #require(throws: GGUFError.self) { try GGUFFile(url: url) }
        #expect(ggufError.description.contains("/nonexistent/dir/model.gguf"))
    }

    @Test("a directory is rejected")
    func directory() throws {
        let dir = try TemporaryDirectory()
        #expect(throws: MappedFileError.self) { try MappedFile(url: dir.url) }
    }
}
