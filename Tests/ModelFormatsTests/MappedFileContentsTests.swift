import Foundation
import Testing

@testable import ModelFormats

#if canImport(Glibc)
import Glibc
#endif

/// `MappedFile.contents(of:)`, how every reader of a user's text file loads it.
@Suite struct MappedFileContentsTests {
    func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-contents-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func readsRegularFilesWholeAndEmptyFilesAsEmpty() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bytes = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        try bytes.write(to: dir.appendingPathComponent("a.bin"))
        #expect(try MappedFile.contents(of: dir.appendingPathComponent("a.bin")) == bytes)
        try Data().write(to: dir.appendingPathComponent("empty.json"))
        #expect(try MappedFile.contents(of: dir.appendingPathComponent("empty.json")).isEmpty)
    }

    /// A FIFO would block a plain read forever: refused at once.
    @Test func refusesWhatIsNotARegularFileAndNamesTheProblem() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("pipe.json")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        #expect(throws: MappedFileError.self) { try MappedFile.contents(of: fifo) }
        do {
            _ = try MappedFile.contents(of: dir.appendingPathComponent("missing.json"))
            Issue.record("a missing file was read")
        } catch {
            #expect(error.detail == "open: No such file or directory")
        }
    }
}
