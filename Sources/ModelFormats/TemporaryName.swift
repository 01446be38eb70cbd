import Foundation

#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The names of the temporary files and folders IBKE writes beside a destination before
/// renaming them into place: `.<name>.<pid>.<uuid>.<suffix>`. The writer's process id in the name
/// lets a later run remove what a killed one left behind, without touching the temporary
/// files of a writer that is still running.
public enum TemporaryName {
    /// A fresh temporary path beside `destination`.
    public static func beside(_ destination: URL, suffix: String = "tmp") -> URL {
        destination.deletingLastPathComponent()
            .appendingPathComponent(".\(destination.lastPathComponent).\(getpid()).\(UUID().uuidString).\(suffix)")
    }

    /// Removes the temporary files and folders beside `destination` (of ``beside(_:suffix:)``'s
    /// naming, suffix `tmp` or `old`) whose process has ended. Best effort: what cannot be
    /// listed or removed is left.
    public static func removeStale(beside destination: URL) {
        let folder = destination.deletingLastPathComponent()
        let prefix = ".\(destination.lastPathComponent)."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return }
        for name in names where name.hasPrefix(prefix) {
            let parts = name.dropFirst(prefix.count).split(separator: ".")
            guard parts.count == 3, ["tmp", "old"].contains(parts[2]), UUID(uuidString: String(parts[1])) != nil,
                let pid = Int32(parts[0]), pid > 0, !isRunning(pid)
            else { continue }
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
    }

    private static func isRunning(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }
}
