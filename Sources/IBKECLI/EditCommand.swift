import ArgumentParser
import Editing
import Evaluation
import Foundation
import Models

/// `ibke edit`: write one fact, or a file of them, into the model and show what changed.
struct Edit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Edit one fact (or a JSONL file of them) and print the model's behaviour before and after.",
        discussion: """
            Example: ibke edit --prompt "{} is located in the city of" --subject "The Eiffel Tower" --target Rome \
            --check "The Eiffel Tower stands in the city of"
            --batch FILE edits every request of a JSONL file (Docs/datasets.md; prompt, subject, target_new, optional \
            target_true) in one editor call; --sequential FILE edits them one after another, each on the model with the \
            earlier ones. The model file is never changed; --save-delta writes the update as safetensors.
            """)

    @OptionGroup var model: ModelOptions
    @Option(
        help: "Editing method (\(EditingMethod.namesWithAliases.joined(separator: ", "))). (default: ft-m)",
        transform: EditingMethod.init(parsing:))
    var method = EditingMethod.ftM
    @Option(name: .customLong("hparams"), help: "Hyperparameters (JSON or YAML) for the method.") var hyperparameters: String?
    @Option(
        help: ArgumentHelp(
            "The trained editor of --method ibke or mend (default: the committed one for a model of `ibke model list` that has one).",
            valueName: "file"))
    var editor: String?
    @OptionGroup var statistics: StatisticsArguments
    @Option(help: "The prompt: a template with {} for the subject, or text that contains the subject.") var prompt: String?
    @Option(help: "The subject the fact is about (must occur in the prompt).") var subject: String?
    @Option(help: "The new answer.") var target: String?
    @Option(help: ArgumentHelp("Edit every request of a JSONL file in one editor call.", valueName: "file.jsonl"))
    var batch: String?
    @Option(help: ArgumentHelp("Edit the requests of a JSONL file one after another.", valueName: "file.jsonl"))
    var sequential: String?
    @Option(help: "With --batch/--sequential: greedy generations on the prompts of the first N requests.")
    var generations = 3
    @Option(help: "A paraphrase to check generalisation on (repeatable).") var check: [String] = []
    @Option(help: "An unrelated prompt to check locality on.") var unrelated = "The capital of France is"
    @Option(help: "Tokens of each greedy generation.") var maxTokens = 16
    @Option(help: "Write the update to this safetensors file (--sequential: every edit's entries, in order).")
    var saveDelta: String?

    func validate() throws {
        let single = [prompt, subject, target].contains { $0 != nil }
        if batch != nil && sequential != nil {
            throw ValidationError("--batch and --sequential are mutually exclusive")
        }
        if let file = batch ?? sequential {
            guard !single else {
                throw ValidationError(
                    "--\(batch != nil ? "batch" : "sequential") \(file) takes the edits from the file; drop --prompt, --subject and --target"
                )
            }
        } else if prompt == nil || subject == nil || target == nil {
            throw ValidationError("give --prompt, --subject and --target, or --batch FILE / --sequential FILE")
        }
        guard generations >= 0 else { throw ValidationError("--generations must be 0 or more") }
        if editor != nil && !method.isTrained {
            throw ValidationError(
                "--editor is for the trained methods (\(EditingMethod.trained.map(\.rawValue).joined(separator: ", "))); \(method.rawValue) takes none"
            )
        }
    }

    func run() throws {
        let loaded = try model.load()
        let bar = ProgressBar()
        let moments = try statistics.secondMoments(for: loaded, bar: bar)
        let editor = try EditorRegistry.make(
            method, model: loaded,
            hyperparameters: hyperparameters.map { URL(fileURLWithPath: $0) },
            statistics: moments, editorFile: try CommittedEditors.file(method, given: self.editor, model: loaded))
        if let file = batch ?? sequential {
            // Read the file before statistics that may take minutes.
            let requests = try Self.requests(file, model: loaded)
            try statistics.prepare(moments, bar: bar)
            try editFile(file, requests: requests, sequentially: sequential != nil, editor: editor, model: loaded)
        } else {
            let request = try EditRequest(prompt: prompt!, subject: subject!, targetNew: target!).prepared(for: loaded)
            try statistics.prepare(moments, bar: bar)
            try editOne(request, editor: editor, model: loaded)
        }
    }

    /// `--prompt/--subject/--target`: one edit.
    private func editOne(_ request: PreparedRequest, editor: any Editor, model loaded: LanguageModel) throws {
        let target = request.request.targetNew
        // The original answer: the unedited model's greedy continuation of the prompt, as long as the target.
        let original = try loaded.greedyContinuations(
            [request.prompt], maxTokens: request.target.count,
            stopTokens: loaded.tokenizer.stopTokenIDs)[0]
        let before = try Snapshot(
            loaded, request: request, original: original, checks: check, unrelated: unrelated,
            maxTokens: maxTokens)
        if original == request.target {
            log(
                "note: the model already answers \(quoted(EditRequest.continuation(request.request.targetNew))) here; the edit reinforces it"
            )
        }

        let start = Date()
        var delta = try editor.edit([request], in: loaded)
        delta.metadata["ibke.model_sha256"] = try loaded.contentHash()
        let applied = try loaded.transformer.apply(delta, source: method.rawValue)
        let seconds = Date().timeIntervalSince(start)
        let after = try Snapshot(
            loaded, request: request, original: original, checks: check, unrelated: unrelated,
            maxTokens: maxTokens)
        applied.revert()

        let text = request.request.text
        print(
            "edit: \(quoted(text)) → \(quoted(EditRequest.continuation(target))) with \(method)\(statisticsNote(editor)) "
                + "in \(String(format: "%.2f", seconds)) s")
        let originalText = loaded.tokenizer.decode(original, skipSpecialTokens: true)
        printTable([
            ("", "before", "after"),
            (
                "P(\(quoted(EditRequest.continuation(target))))", String(format: "%.4f", before.targetProbability),
                String(format: "%.4f", after.targetProbability)
            ),
            (
                "P(\(quoted(originalText))) (original answer)", String(format: "%.4f", before.originalProbability),
                String(format: "%.4f", after.originalProbability)
            ),
        ])
        print("top-5 before: \(before.top)")
        print("top-5 after:  \(after.top)")
        for (b, a) in zip(before.generations, after.generations) {
            print("\n\(b.0)\n  before: \(quoted(b.1))\n  after:  \(quoted(a.1))")
        }
        try save(delta)
    }

    /// `--batch` / `--sequential`: every request of a file.
    private func editFile(
        _ file: String, requests: [PreparedRequest], sequentially: Bool, editor: any Editor,
        model loaded: LanguageModel
    ) throws {
        // The original answer: `target_true` when the line gives one, else the unedited model's greedy
        // continuation of the prompt, as long as the target.
        let greedy = try loaded.greedyContinuations(
            requests.map(\.prompt), maxTokens: requests.map(\.target.count).max() ?? 1,
            stopTokens: loaded.tokenizer.stopTokenIDs)
        let originals = zip(requests, greedy).map { r, g in r.targetTrue ?? Array(g.prefix(r.target.count)) }
        let generated = Array(requests.prefix(generations))
        let before = try FileSnapshot(
            loaded, requests: requests, originals: originals, generated: generated, checks: check,
            unrelated: unrelated, maxTokens: maxTokens)

        let start = Date()
        var delta: WeightDelta
        var rightAfter: [Double] = []
        let revert: () -> Void
        if sequentially {
            let edits = try editor.editSequentially(requests, in: loaded) { i, _ in
                let score = try loaded.score([ContinuationRequest(prompt: requests[i].prompt, target: requests[i].target)])[0]
                rightAfter.append(exp(Double(score.totalLogProb)))
            }
            delta = edits.delta
            revert = edits.revert
        } else {
            delta = try editor.edit(requests, in: loaded)
            let applied = try loaded.transformer.apply(delta, source: method.rawValue)
            revert = applied.revert
        }
        let seconds = Date().timeIntervalSince(start)
        delta.metadata["ibke.model_sha256"] = try loaded.contentHash()
        let after: FileSnapshot
        do {
            after = try FileSnapshot(
                loaded, requests: requests, originals: originals, generated: generated, checks: check,
                unrelated: unrelated, maxTokens: maxTokens)
        } catch {
            revert()
            throw error
        }
        revert()

        let name = URL(fileURLWithPath: file).lastPathComponent
        let how = sequentially ? "one after another" : "in one batch"
        print(
            "edit: \(requests.count) request\(requests.count == 1 ? "" : "s") from \(name), \(how), with \(method)"
                + "\(statisticsNote(editor)) in \(String(format: "%.2f", seconds)) s")
        let topBefore = zip(requests, before.top).filter { $0.target.first == $1.id }.count
        let topAfter = zip(requests, after.top).filter { $0.target.first == $1.id }.count
        print(
            "target's first token ranked first: \(topBefore)/\(requests.count) before, \(topAfter)/\(requests.count) after"
                + (sequentially ? " (after: on the model with every edit)" : ""))
        for (i, request) in requests.enumerated() {
            let target = quoted(EditRequest.continuation(request.request.targetNew))
            let originalText = quoted(loaded.tokenizer.decode(originals[i], skipSpecialTokens: true))
            let originalKind = request.targetTrue != nil ? "target_true" : "original answer"
            print("\n[\(i + 1)] \(quoted(request.request.text)) → \(target)")
            var rows = [
                ("", "before", "after"),
                (
                    "P(\(target))", String(format: "%.4f", before.targetProbabilities[i]),
                    String(format: "%.4f", after.targetProbabilities[i])
                ),
                (
                    "P(\(originalText)) (\(originalKind))", String(format: "%.4f", before.originalProbabilities[i]),
                    String(format: "%.4f", after.originalProbabilities[i])
                ),
                ("top-1", topText(before.top[i], loaded), topText(after.top[i], loaded)),
            ]
            if sequentially { rows.append(("P(\(target)) right after its own edit", "", String(format: "%.4f", rightAfter[i]))) }
            printTable(rows, indent: "    ")
        }
        if generated.count < requests.count && generations > 0 {
            print("\n(generations for the first \(generated.count) of \(requests.count) requests; --generations N for more)")
        }
        for (i, (b, a)) in zip(before.generations, after.generations).enumerated() {
            let label = i < generated.count ? "prompt [\(i + 1)]: \(b.0)" : b.0
            print("\n\(label)\n  before: \(quoted(b.1))\n  after:  \(quoted(a.1))")
        }
        try save(delta)
    }

    /// The requests of a JSONL edit file, read by the dataset loader (errors name the file and
    /// line) and checked against the model.
    static func requests(_ file: String, model: LanguageModel) throws -> [PreparedRequest] {
        let data = try Dataset.load(DatasetSpec(kind: .custom, path: file))
        guard !data.cases.isEmpty else { throw CLIError("\(file): no edit requests in the file") }
        var prepared: [PreparedRequest] = []
        for c in data.cases {
            for request in c.requests {
                do {
                    prepared.append(try request.prepared(for: model, index: prepared.count))
                } catch {
                    throw CLIError("\(file): case \(c.id): \(error)")
                }
            }
        }
        return prepared
    }

    private func statisticsNote(_ editor: any Editor) -> String {
        editor.statistics == .none ? "" : " (statistics: \(editor.statistics))"
    }

    private func save(_ delta: WeightDelta) throws {
        guard let saveDelta else { return }
        try delta.save(to: URL(fileURLWithPath: saveDelta))
        log("wrote the delta to \(saveDelta)")
    }
}

/// Rows of a label column and two right-aligned value columns.
private func printTable(_ rows: [(String, String, String)], indent: String = "") {
    let width = rows.map(\.0.count).max()!
    let valueWidth = max(8, rows.map { max($0.1.count, $0.2.count) }.max()!)
    func pad(_ text: String) -> String { String(repeating: " ", count: max(0, valueWidth - text.count)) + text }
    for (label, b, a) in rows {
        print(indent + label.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + pad(b) + "  " + pad(a))
    }
}

private func topText(_ top: (id: Int, logProb: Float), _ model: LanguageModel) -> String {
    "\(quoted(model.tokenizer.decode([top.id], skipSpecialTokens: false))) \(String(format: "%.3f", exp(top.logProb)))"
}

/// What `ibke edit` shows of the model at one moment.
private struct Snapshot {
    var targetProbability: Double
    var originalProbability: Double
    var top: String
    var generations: [(String, String)]

    init(
        _ model: LanguageModel, request: PreparedRequest, original: [Int], checks: [String], unrelated: String,
        maxTokens: Int
    ) throws {
        let scores = try model.score([
            ContinuationRequest(prompt: request.prompt, target: request.target),
            ContinuationRequest(prompt: request.prompt, target: original.isEmpty ? request.target : original),
        ])
        targetProbability = exp(Double(scores[0].totalLogProb))
        originalProbability = exp(Double(scores[1].totalLogProb))
        top = try model.topNextTokens(request.prompt, k: 5).map {
            "\(quoted(model.tokenizer.decode([$0.id], skipSpecialTokens: false))) \(String(format: "%.3f", exp($0.logProb)))"
        }.joined(separator: ", ")
        let prompts =
            [("prompt: " + request.request.text, request.prompt)]
            + checks.map { ("paraphrase: " + $0, model.encode($0)) }
            + [("unrelated: " + unrelated, model.encode(unrelated))]
        let outputs = try model.greedyContinuations(prompts.map(\.1), maxTokens: maxTokens, stopTokens: model.tokenizer.stopTokenIDs)
        generations = zip(prompts, outputs).map { ($0.0, model.tokenizer.decode($1, skipSpecialTokens: true)) }
    }
}

/// What `ibke edit --batch/--sequential` shows of the model at one moment, per request.
private struct FileSnapshot {
    var targetProbabilities: [Double]
    var originalProbabilities: [Double]
    var top: [(id: Int, logProb: Float)]
    /// The prompts of `generated`, then the checks and the unrelated prompt.
    var generations: [(String, String)]

    init(
        _ model: LanguageModel, requests: [PreparedRequest], originals: [[Int]], generated: [PreparedRequest],
        checks: [String], unrelated: String, maxTokens: Int
    ) throws {
        let scores = try model.score(
            zip(requests, originals).flatMap { r, o in
                [
                    ContinuationRequest(prompt: r.prompt, target: r.target),
                    ContinuationRequest(prompt: r.prompt, target: o.isEmpty ? r.target : o),
                ]
            })
        targetProbabilities = stride(from: 0, to: scores.count, by: 2).map { exp(Double(scores[$0].totalLogProb)) }
        originalProbabilities = stride(from: 1, to: scores.count, by: 2).map { exp(Double(scores[$0].totalLogProb)) }
        top = try requests.map { try model.topNextTokens($0.prompt, k: 1)[0] }
        let prompts =
            generated.map { ($0.request.text, $0.prompt) }
            + checks.map { ("paraphrase: " + $0, model.encode($0)) }
            + [("unrelated: " + unrelated, model.encode(unrelated))]
        let outputs = try model.greedyContinuations(prompts.map(\.1), maxTokens: maxTokens, stopTokens: model.tokenizer.stopTokenIDs)
        generations = zip(prompts, outputs).map { ($0.0, model.tokenizer.decode($1, skipSpecialTokens: true)) }
    }
}

/// Text in double quotes with newlines shown as \n (generations span lines).
private func quoted(_ text: String) -> String {
    "\"" + text.replacingOccurrences(of: "\n", with: "\\n") + "\""
}
