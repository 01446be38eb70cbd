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
        reuseLargeAllocations()
        do {
            var command = try IBKECommand.parseAsRoot()
            try command.run()
        } catch {
            exit(reporting: error)
        }
    }

    /// Prints an error as ArgumentParser would (help and version go to standard output), with
    /// the text of the project's own errors, which may quote a file's content, made safe for
    /// the terminal (``TerminalText``) and kept to one line.
    static func exit(reporting error: Error) -> Never {
        let code = IBKECommand.exitCode(for: error)
        let fromParser = String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
        let message =
            fromParser
            ? IBKECommand.fullMessage(for: error)
            : "Error: " + TerminalText.safe(String(describing: error)) + (CommandLineHint.hint(for: error) ?? "")
        if code == .success {
            if !message.isEmpty { print(message) }
        } else {
            log(fromParser ? TerminalText.safe(message, keepingNewlines: true) : message)
        }
        Glibc.exit(code.rawValue)
    }

    /// Keeps freed large buffers in the heap for the next call to reuse. glibc otherwise maps
    /// every allocation over 32 MB afresh (a 512-token prefill's 100 MB of logits) and the kernel
    /// zero-fills each page again on first touch (page faults over an `ibke bench` run: 387k
    /// before, 278k after; the rest are about the model's 538 MB of weights and the bench's own
    /// 512 MB read buffer, 131k pages each).
    static func reuseLargeAllocations() {
        #if canImport(Glibc)
        // <malloc.h> is not in the Glibc module; its values: M_TRIM_THRESHOLD −1, M_MMAP_THRESHOLD −3.
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        _ = mallopt(-3, 1 << 30)
        _ = mallopt(-1, Int32.max)
        #endif
    }

    /// Gives the heap's free pages back to the system. With the policy above nothing freed is
    /// returned by itself, so a loader's temporaries (a tokenizer's construction, 12 MB on Gemma
    /// 3) would stay resident beside the model for the rest of the run.
    static func returnFreedMemory() {
        #if canImport(Glibc)
        // <malloc.h>'s malloc_trim, not in the Glibc module either.
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
        #endif
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
        subcommands: [
            ModelCommand.self, Inspect.self, Tokenize.self, Generate.self, Score.self, Bench.self, Edit.self, Apply.self,
            Eval.self, ReportCommand.self, Stats.self, Train.self, Serve.self,
        ])
}
