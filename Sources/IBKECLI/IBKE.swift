import ArgumentParser

@main
struct IBKECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ibke",
        abstract: "IBKE: load, run, edit and evaluate language models on the CPU.",
        subcommands: [Bench.self])
}
