import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory, unmapped when the last reference goes away.
///
/// The one memory map of this module: ``GGUFFile``, ``SafetensorsFile`` and
/// ``SHA256/hex(file:)`` read through it.
///
/// Checkpoints are read through a mapping rather than loaded: opening a 100 MB model costs no
/// I/O until a tensor is touched, and tensors can be views into the mapping instead of copies.
/// This does not use `Data(contentsOf:options: .mappedIfSafe)`, which on Linux reads the whole
/// file into memory (swift-foundation maps only for `.alwaysMapped`), and it gives explicit
/// control over the mapping's lifetime.
///
/// The mapping is `PROT_READ`/`MAP_PRIVATE`: writing through ``bytes`` crashes. If the file is
/// truncated by another process while mapped, touching the lost pages raises SIGBUS, as with any
/// mapping; checkpoints are not expected to change while they are in use.
/// `@unchecked Sendable`: `bytes` is a raw pointer to a read-only mapping, fixed at init and
/// unmapped only in deinit, so any thread may read through it.
public final class MappedFile: @unchecked Sendable {
    /// The file that is mapped.
    public let url: URL
    /// The file's contents (empty for an empty file). Valid as long as this object is alive.
    public let bytes: UnsafeRawBufferPointer

    /// Maps `url` read-only.
    ///
    /// - Throws: ``MappedFileError`` if the file cannot be opened, is not a regular file, or
    ///   cannot be mapped.
    public init(url: URL) throws {
        self.url = url
        let path = url.path
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            throw MappedFileError(url: url, operation: "open", code: errno)
        }
        // The descriptor is not needed once the mapping exists.
        defer { close(fd) }

        var info = stat()
        if fstat(fd, &info) != 0 {
            throw MappedFileError(url: url, operation: "stat", code: errno)
        }
        // Also what keeps a FIFO from blocking a reader forever.
        if (info.st_mode & S_IFMT) != S_IFREG {
            throw MappedFileError(
                url: url, operation: "map", code: EINVAL, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            // mmap rejects a zero length; an empty file is simply an empty buffer.
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw MappedFileError(url: url, operation: "mmap", code: errno)
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    /// Lets go of this process's resident pages within `range` (shrunk to whole pages); reading
    /// them again faults them back in from the file. For parts read once, such as a checkpoint's
    /// header after loading, so that they stop counting against the process's memory.
    public func releasePages(_ range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (max(range.lowerBound, 0) + page - 1) / page * page
        let end = min(range.upperBound, bytes.count) / page * page
        guard let base = bytes.baseAddress, start < end else { return }
        // MADV_DONTNEED on a read-only private mapping drops the page-table entries only: no page
        // was written, so nothing can be lost. A failure leaves the pages resident, which is harmless.
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    /// The whole of a regular file, copied into memory: how every reader of a user's text file
    /// (JSON, YAML, datasets, corpora) loads it. Not Foundation's `Data(contentsOf:)`, which
    /// blocks forever on a FIFO and leaks a 4 KB buffer on some reads (LeakSanitizer, in the
    /// tokenizer fuzz target).
    public static func contents(of url: URL) throws(MappedFileError) -> Data {
        do {
            // The mapping must outlive the copy: `bytes` alone does not keep the object alive.
            let file = try MappedFile(url: url)
            return withExtendedLifetime(file) { Data(file.bytes) }
        } catch let error as MappedFileError {
            throw error
        } catch {
            throw MappedFileError(url: url, operation: "read", code: EIO, reason: "\(error)")
        }
    }
}

/// Why a file could not be mapped: the operation that failed and the system's reason.
public struct MappedFileError: Error, CustomStringConvertible, Sendable {
    /// The file that could not be mapped.
    public let url: URL
    /// The failing step: "open", "stat", "map" or "mmap".
    public let operation: String
    /// The `errno` value reported by the system.
    public let code: Int32
    /// The explanation shown in ``description``.
    public let reason: String

    init(url: URL, operation: String, code: Int32, reason: String? = nil) {
        self.url = url
        self.operation = operation
        self.code = code
        self.reason = reason ?? String(cString: strerror(code))
    }

    public var description: String {
        "\(url.path): cannot \(operation): \(reason)"
    }

    /// The failing step and the reason without the path, `"open: No such file or directory"`,
    /// for readers whose own errors name the file.
    public var detail: String {
        "\(operation): \(reason)"
    }
}
