import Foundation
import ModelFormats
import Testing

@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ])
    func digestsMatchFIPSVectors(input: String, expected: String) {
        let digest = Array(input.utf8).withUnsafeBytes { SHA256.hex($0) }
        #expect(digest == expected)
    }

    @Test func incrementalUpdatesMatchOneShot() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var hasher = SHA256()
        for chunk in stride(from: 0, to: bytes.count, by: 37) {
            bytes[chunk..<min(chunk + 37, bytes.count)].withUnsafeBytes { hasher.update($0) }
        }
        #expect(hasher.finalizeHex() == bytes.withUnsafeBytes { SHA256.hex($0) })
    }
}
