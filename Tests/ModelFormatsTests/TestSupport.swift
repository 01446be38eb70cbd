import Foundation
import TestSupport
import Testing

/// The test bundle's copy of `Tests/ModelFormatsTests/Fixtures/<path>`.
func fixtureURL(_ path: String) throws -> URL {
    let root = try #require(
        Bundle.module.url(forResource: "Fixtures", withExtension: nil),
        "Fixtures folder missing from the test bundle")
    return root.appendingPathComponent(path)
}

/// Bytes of a safetensors file with the given header text and data section; `headerLength`
/// overrides the length field to build files that lie about it.
func safetensorsBytes(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    let length = headerLength ?? UInt64(headerBytes.count)
    var bytes = withUnsafeBytes(of: length.littleEndian) { Array($0) }
    bytes += headerBytes
    bytes += data
    return bytes
}

/// Writes `bytes` to `folder/name` and returns its URL.
@discardableResult
func writeFile(_ bytes: [UInt8], named name: String, in folder: URL) throws -> URL {
    let url = folder.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}

/// Writes a UTF-8 text file to `folder/name` and returns its URL.
@discardableResult
func writeText(_ text: String, named name: String, in folder: URL) throws -> URL {
    try writeFile(Array(text.utf8), named: name, in: folder)
}

/// Little-endian bytes of float32 values.
func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

/// Checks that `error` is one line that starts with `file` and mentions every fragment.
func expectNames(
    _ error: (any Error & CustomStringConvertible)?, file: URL, _ fragments: String...,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let error else {
        Issue.record("no error was thrown", sourceLocation: sourceLocation)
        return
    }
    let text = error.description
    #expect(text.hasPrefix(file.path + ": "), "\(text)", sourceLocation: sourceLocation)
    #expect(!text.contains("\n"), "\(text)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(
            text.contains(fragment), "'\(fragment)' not in: \(text)",
            sourceLocation: sourceLocation)
    }
}
