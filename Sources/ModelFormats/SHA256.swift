import Crypto
import Foundation

/// SHA-256, for checking downloads and naming a model's content: swift-crypto's (BoringSSL's
/// assembly on Linux), behind the small interface the project uses.
public struct SHA256: Sendable {
    private var hasher = Crypto.SHA256()

    public init() {}

    /// Hex digest of `bytes`.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }

    /// Hex digest of a file's contents, read through a memory map.
    public static func hex(file url: URL) throws -> String {
        let mapped = try MappedFile(url: url)
        return hex(mapped.bytes)
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: bytes)
    }

    public mutating func finalizeHex() -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in hasher.finalize() { text += [digits[Int(byte >> 4)], digits[Int(byte & 15)]] }
        return String(decoding: text, as: UTF8.self)
    }
}
