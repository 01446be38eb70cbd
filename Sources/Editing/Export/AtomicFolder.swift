import Foundation
import ModelFormats

/// A folder built whole before it appears: its files are written into a temporary sibling
/// folder, which is then renamed to the destination, so that no reader sees half an export.
enum AtomicFolder {
    /// Runs `body` on a new temporary folder beside `destination`, then puts it in place. An
    /// existing destination (which the caller has agreed to replace) is moved aside first and
    /// deleted after: between the two renames the destination is briefly absent, never partial.
    static func write(to destination: URL, body: (URL) throws -> Void) throws {
        let manager = FileManager.default
        TemporaryName.removeStale(beside: destination)
        let temporary = TemporaryName.beside(destination)
        try manager.createDirectory(at: temporary, withIntermediateDirectories: false)
        var placed = false
        defer { if !placed { try? manager.removeItem(at: temporary) } }
        try body(temporary)
        var old: URL?
        if manager.fileExists(atPath: destination.path) {
            let aside = TemporaryName.beside(destination, suffix: "old")
            try manager.moveItem(at: destination, to: aside)
            old = aside
        }
        do {
            try manager.moveItem(at: temporary, to: destination)
        } catch {
            if let old { try? manager.moveItem(at: old, to: destination) }
            throw error
        }
        placed = true
        if let old { try? manager.removeItem(at: old) }
    }
}
