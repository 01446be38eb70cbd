import COpenBLAS
import Foundation

/// What OpenBLAS chose at load time, and whether a faster kernel family is available.
///
/// OpenBLAS picks its kernels from the CPU model when the library loads. Debian's 0.3.21 does
/// not know recent Intel Xeons (Sapphire/Emerald Rapids) and falls back to its SSE3
/// `Prescott` kernels, several times slower than the AVX-512 `SkylakeX` ones those CPUs run
/// fine. The choice can only be overridden with `OPENBLAS_CORETYPE` before the library loads,
/// so the `ibke` tool restarts itself with it (see ``recommendedCoreType``).
public enum BLASRuntime {
    /// The kernel family OpenBLAS runs (`SkylakeX`, `Haswell`, `Zen`, `Prescott`, …).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Generic fallbacks OpenBLAS uses for CPUs it does not recognise.
    static let fallbackCores: Set<String> = [
        "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Katmai", "Northwood", "Banias", "Atom",
    ]

    /// The `OPENBLAS_CORETYPE` that would run faster here, or nil when OpenBLAS's own choice
    /// should stand (the user set one, or OpenBLAS recognised the CPU).
    public static func recommendedCoreType(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        cpuFlags: Set<String> = cpuFlags()
    ) -> String? {
        if environment["OPENBLAS_CORETYPE"] != nil { return nil }
        guard fallbackCores.contains(coreName) else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The CPU feature flags from /proc/cpuinfo (empty where there is none).
    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}
