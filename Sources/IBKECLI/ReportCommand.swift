import ArgumentParser
import Evaluation
import Foundation
import ModelFormats

/// `ibke report RUN_DIR…`: compares finished `ibke eval` runs.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Compare evaluation runs: a Markdown table on standard output, an HTML page with charts.",
        discussion:
            "Reads summary.json from each run directory. Warns when runs differ in settings that make their numbers incomparable (protocol, metric family, top-k, chat template, zsRE target, model)."
    )

    @Argument(help: ArgumentHelp("Run directories written by `ibke eval` (each holds summary.json).", valueName: "run-dir"))
    var runs: [String] = []

    @Option(help: ArgumentHelp("Where to write the HTML report.", valueName: "path"))
    var out = "report.html"

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run directory") }
    }

    func run() throws {
        let summaries = try runs.map { try RunSummary.load(runDirectory: URL(fileURLWithPath: $0)) }
        emit(SummaryTable.markdown(summaries))
        let destination = URL(fileURLWithPath: out)
        try AtomicFile.write(Data(ReportHTML.document(summaries).utf8), to: destination) {
            CLIError("\(destination.path): cannot write: \($0)")
        }
        log("wrote \(destination.path)")
    }
}
