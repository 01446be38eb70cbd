import Foundation
import Testing

@testable import ModelFormats

/// Temporary files of a killed writer are removed by the next write to the same destination;
/// those of a running writer, and other files, are not.
@Suite struct TemporaryNameTests {
    /// The id of a process that has ended.
    static func endedProcess() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    @Test func aWriteRemovesWhatAKilledWriterLeft() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-tmpname-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let destination = folder.appendingPathComponent("out.gguf")
        let dead = try Self.endedProcess()
        let stale = [
            folder.appendingPathComponent(".out.gguf.\(dead).\(UUID().uuidString).tmp"),
            folder.appendingPathComponent(".out.gguf.\(dead).\(UUID().uuidString).old"),
        ]
        let kept = [
            folder.appendingPathComponent(".out.gguf.\(getpid()).\(UUID().uuidString).tmp"),  // a running writer's
            folder.appendingPathComponent(".other.gguf.\(dead).\(UUID().uuidString).tmp"),  // another destination's
            folder.appendingPathComponent(".out.gguf.\(dead).notes.tmp"),
        ]  // not of this naming
        for url in stale + kept { try Data("x".utf8).write(to: url) }
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent(".out.gguf.\(dead).\(UUID().uuidString).tmp"),
            withIntermediateDirectories: false)

        try AtomicFile.write(Data("new".utf8), to: destination) { _ in TestError() }
        #expect(try Data(contentsOf: destination) == Data("new".utf8))
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
        #expect(left == Set(kept.map(\.lastPathComponent) + ["out.gguf"]))
    }

    struct TestError: Error {}
}
