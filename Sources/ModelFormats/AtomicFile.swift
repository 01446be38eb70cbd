import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written atomically: to a temporary file in the destination's folder, flushed to disk
/// and renamed over the destination, so that a reader (or a crash) sees either the old file or
/// the complete new one, never a partial write. The writers of this module share it, and
/// ``write(_:to:failure:)`` serves every other file IBKE writes (run results, reports).
public struct AtomicFile {
    private let fd: Int32
    /// The destination, named in errors.
    private let path: String
    private let failure: (String) -> any Error

    /// Runs `body` on a temporary file, then renames it to `url`.
    ///
    /// - Parameters:
    ///   - failure: the error to throw for a failed system call, from its reason.
    ///   - beforeRename: runs once the temporary file is complete (tests observe and fail here).
    /// - Throws: what `body` or `beforeRename` throws, or `failure(…)`; the destination is then
    ///   left as it was and the temporary file removed.
    public static func write(
        to url: URL, failure: @escaping (String) -> any Error,
        beforeRename: () throws -> Void = {}, body: (AtomicFile) throws -> Void
    ) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent()
        TemporaryName.removeStale(beside: url)
        let temporary = TemporaryName.beside(url)
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("cannot create \(temporary.path): \(errnoText())") }
        var renamed = false
        defer {
            if !renamed { unlink(temporary.path) }
        }
        do {
            defer { close(fd) }
            try body(AtomicFile(fd: fd, path: path, failure: failure))
            guard fsync(fd) == 0 else { throw failure("fsync: \(errnoText())") }
        }
        try beforeRename()
        guard rename(temporary.path, path) == 0 else {
            throw failure("rename from \(temporary.path): \(errnoText())")
        }
        renamed = true
        // Make the rename itself durable; failure here does not undo a completed write.
        let folderFD = open(folder.path, O_RDONLY | O_CLOEXEC)
        if folderFD >= 0 {
            _ = fsync(folderFD)
            close(folderFD)
        }
    }

    /// Writes `data` to `url` atomically.
    ///
    /// - Parameter failure: the error to throw for a failed system call, from its reason.
    /// - Throws: `failure(…)`; the destination is then left as it was.
    public static func write(_ data: Data, to url: URL, failure: @escaping (String) -> any Error) throws {
        try write(to: url, failure: failure) { file in
            try data.withUnsafeBytes { try file.write($0) }
        }
    }

    /// Appends bytes.
    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = systemWrite(fd, base + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(Self.errnoText())
            }
            done += n
        }
    }

    /// Appends the bytes of an array.
    func write<T>(_ values: [T]) throws {
        try values.withUnsafeBytes { try write($0) }
    }

    /// Appends `count` zero bytes (alignment padding).
    func writeZeros(_ count: Int) throws {
        guard count > 0 else { return }
        try write([UInt8](repeating: 0, count: count))
    }

    /// `write(2)`; named apart because `write` here means the methods.
    private func systemWrite(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(fd, pointer, count)
        #else
        Darwin.write(fd, pointer, count)
        #endif
    }

    static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
