import Foundation
import Testing

/// `ibke … --help` of every command against the committed text in `Snapshots/help/`: a changed
/// option, default or description shows up in review. After an intended change, rewrite them
/// with `IBKE_UPDATE_SNAPSHOTS=1 swift test -c release --filter HelpSnapshotTests`.
@Suite struct HelpSnapshotTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Snapshots/help")
    static let updating = ProcessInfo.processInfo.environment["IBKE_UPDATE_SNAPSHOTS"] == "1"

    /// Every command, found by walking the SUBCOMMANDS sections from `ibke --help`.
    static func commands() throws -> [[String]] {
        var found: [[String]] = []
        var pending: [[String]] = [[]]
        while let command = pending.popLast() {
            found.append(command)
            let help = try IBKE.succeed(command + ["--help"]).stdout
            guard let section = help.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first else { continue }
            for line in section.split(separator: "\n") where line.hasPrefix("  ") && !line.hasPrefix("   ") {
                guard let name = line.split(separator: " ").first, !name.contains("'") else { continue }
                if name != "help" && name != "See" { pending.append(command + [String(name)]) }
            }
        }
        return found.sorted { $0.joined(separator: " ") < $1.joined(separator: " ") }
    }

    static func file(_ command: [String]) -> URL {
        folder.appendingPathComponent((["ibke"] + command).joined(separator: "-") + ".txt")
    }

    @Test func everyCommandsHelpMatchesItsSnapshot() throws {
        let commands = try Self.commands()
        #expect(commands.count >= 17, "\(commands)")
        if Self.updating { try FileManager.default.createDirectory(at: Self.folder, withIntermediateDirectories: true) }
        for command in commands {
            let help = try IBKE.succeed(command + ["--help"]).stdout
            let url = Self.file(command)
            if Self.updating {
                try Data(help.utf8).write(to: url)
                continue
            }
            let snapshot = try? String(contentsOf: url, encoding: .utf8)
            #expect(
                snapshot == help,
                "`ibke \(command.joined(separator: " ")) --help` differs from \(url.lastPathComponent) (IBKE_UPDATE_SNAPSHOTS=1 rewrites it)"
            )
        }
        // No snapshot of a command that is gone.
        let expected = Set(commands.map { Self.file($0).lastPathComponent })
        let present = Set((try? FileManager.default.contentsOfDirectory(atPath: Self.folder.path)) ?? [])
        #expect(present == expected, "stale: \(present.subtracting(expected).sorted()), missing: \(expected.subtracting(present).sorted())")
    }
}
