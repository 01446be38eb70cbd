import Foundation

#if canImport(Glibc)
    @preconcurrency import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A read-only memory map of a whole file, unmapped when the last reference goes away.
///
/// Safetensors checkpoints are used in place: tensors are byte ranges of this map, so opening a
/// multi-gigabyte file costs a page-table entry, not a read. Foundation's `.mappedIfSafe` reads
/// the whole file on Linux (STYLE.md §4b), hence raw `mmap`.
///
/// The bytes must not change while mapped: truncating the file under a live map makes the next
/// access fault (SIGBUS), as with any mmap-based reader.
///
/// Internal on purpose: the GGUF reader has its own `MappedFile`; the two are to be unified.
final class SafetensorsMappedBytes: @unchecked Sendable {
    /// The mapped file.
    let url: URL
    /// Start of the mapping, nil for an empty file (mmap refuses zero-length maps).
    private let base: UnsafeRawPointer?
    /// Size of the file in bytes.
    let count: Int

    /// Maps `url` read-only (`PROT_READ`, `MAP_PRIVATE`).
    ///
    /// - Throws: ``SafetensorsError/cannotOpen(file:reason:)`` if the file cannot be opened,
    ///   is not a regular file or cannot be mapped.
    init(url: URL) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SafetensorsError.cannotOpen(file: path, reason: Self.errnoText())
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SafetensorsError.cannotOpen(file: path, reason: Self.errnoText())
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw SafetensorsError.cannotOpen(file: path, reason: "not a regular file")
        }
        count = Int(info.st_size)
        if count == 0 {
            base = nil
            return
        }
        let mapped = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SafetensorsError.cannotOpen(file: path, reason: "mmap: \(Self.errnoText())")
        }
        base = UnsafeRawPointer(mapped)
    }

    deinit {
        if let base {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        }
    }

    /// The whole file. Valid for as long as this object is alive.
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: count)
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
