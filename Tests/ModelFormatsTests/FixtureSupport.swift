import Foundation
import TestSupport
import Testing

@testable import ModelFormats

/// Fixture files and scratch space shared by the GGUF tests.
enum Fixtures {
    /// A committed fixture (Tests/ModelFormatsTests/Fixtures/<name>.<ext>).
    static func url(_ name: String, _ ext: String) throws -> URL {
        try #require(
            Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Fixtures"),
            "missing Fixtures/\(name).\(ext): see Scripts/golden/README.md")
    }

    static var allTypesGGUF: URL { get throws { try url("gguf_all_types", "gguf") } }

    /// The manifest written next to gguf_all_types.gguf by the generator.
    struct Manifest: Decodable {
        struct Tensor: Decodable {
            let name: String
            let type: String
            let ne: [Int]
            let shape: [Int]
            let start: Int
            let count: Int
        }
        let tensors: [Tensor]
    }

    static func manifest() throws -> Manifest {
        try JSONDecoder().decode(
            Manifest.self, from: Data(contentsOf: url("gguf_all_types", "json")))
    }

    /// The expected dequantized values of every fixture tensor, concatenated (little-endian f32).
    static func expectedValues() throws -> [Float] {
        let data = try Data(contentsOf: url("gguf_all_types.expected", "f32"))
        return data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map {
                Float(
                    bitPattern: UInt32(
                        littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
            }
        }
    }
}

/// Little-endian byte building and patching for hand-made or corrupted GGUF files.
struct GGUFBytes {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += Array(s.utf8)
    }

    /// "GGUF", version, tensor count, metadata count.
    mutating func header(version: UInt32 = 3, tensors: UInt64, keys: UInt64) {
        bytes += Array("GGUF".utf8)
        u32(version)
        u64(tensors)
        u64(keys)
    }

    /// Pads with zeros to a multiple of `alignment`.
    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    static func patch(_ bytes: inout [UInt8], at offset: Int, u32 value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) {
            for (i, b) in $0.enumerated() { bytes[offset + i] = b }
        }
    }

    static func patch(_ bytes: inout [UInt8], at offset: Int, u64 value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) {
            for (i, b) in $0.enumerated() { bytes[offset + i] = b }
        }
    }

    /// The offset just past a GGUF string (length + bytes) equal to `s`, which must occur once.
    static func offset(after s: String, in bytes: [UInt8]) throws -> Int {
        var needle = GGUFBytes()
        needle.string(s)
        let pattern = needle.bytes
        var found: [Int] = []
        if bytes.count >= pattern.count {
            for i in 0...(bytes.count - pattern.count) where bytes[i] == pattern[0] {
                if Array(bytes[i..<(i + pattern.count)]) == pattern {
                    found.append(i + pattern.count)
                }
            }
        }
        try #require(found.count == 1, "string '\(s)' found \(found.count) times in the file")
        return found[0]
    }
}
