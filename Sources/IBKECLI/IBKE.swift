import ArgumentParser
import Foundation
import TensorCore

#if canImport(Glibc)
    import Glibc
#endif

@main
enum Entry {
    static func main() {
        restartWithFasterBLASIfNeeded()
        IBKECommand.main()
    }

    /// Re-executes this process with `OPENBLAS_CORETYPE` set when OpenBLAS fell back to slow
    /// generic kernels on a CPU it does not recognise (``BLASRuntime/recommendedCoreType``).
    static func restartWithFasterBLASIfNeeded() {
        guard let core = BLASRuntime.recommendedCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        var arguments = CommandLine.arguments.map { strdup($0) }
        arguments.append(nil)
        execv("/proc/self/exe", &arguments)
        // execv returned: carry on with the slower kernels.
        unsetenv("OPENBLAS_CORETYPE")
    }
}

struct IBKECommand: ParsableCommand {
    static let version = "0.2.0"
    static let configuration = CommandConfiguration(
        commandName: "ibke",
        abstract: "IBKE: load, run, edit and evaluate language models on the CPU.",
        version: version,
        subcommands: [ModelCommand.self, Inspect.self, Tokenize.self, Generate.self, Score.self, Bench.self, Edit.self, Apply.self,
                      Eval.self, ReportCommand.self, Stats.self, Train.self])
}
