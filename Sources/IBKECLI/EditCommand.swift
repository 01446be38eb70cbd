import ArgumentParser
import Editing
import Foundation
import Models

/// `ibke edit`: write one fact into the model and show what changed.
struct Edit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Edit one fact and print the model's behaviour before and after.",
        discussion: """
        Example: ibke edit --prompt "{} is located in the city of" --subject "The Eiffel Tower" --target Rome \
        --check "The Eiffel Tower stands in the city of"
        The model file is never changed; --save-delta writes the update as safetensors.
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Editing method (\(EditorRegistry.names.joined(separator: ", "))).") var method = "ft-m"
    @Option(name: .customLong("hparams"), help: "Hyperparameters (JSON or YAML) for the method.") var hyperparameters: String?
    @Option(help: "The prompt: a template with {} for the subject, or text that contains the subject.") var prompt: String
    @Option(help: "The subject the fact is about (must occur in the prompt).") var subject: String
    @Option(help: "The new answer.") var target: String
    @Option(help: "A paraphrase to check generalisation on (repeatable).") var check: [String] = []
    @Option(help: "An unrelated prompt to check locality on.") var unrelated = "The capital of France is"
    @Option(help: "Tokens of each greedy generation.") var maxTokens = 16
    @Option(help: "Write the update to this safetensors file.") var saveDelta: String?

    func run() throws {
        let loaded = try model.load()
        let statsDirectory = DefaultModel.home.appendingPathComponent("cache/stats")
        let corpus = ProcessInfo.processInfo.environment["IBKE_STATS_CORPUS"].map { URL(fileURLWithPath: $0) }
        let model = loaded
        let editor = try EditorRegistry.make(method, config: loaded.config,
                                             hyperparameters: hyperparameters.map { URL(fileURLWithPath: $0) },
                                             secondMoment: { l in
                                                 try StatisticsCollector.collect(StatisticsOptions(layers: [l], corpus: corpus), model: model,
                                                     cache: StatisticsCache(directory: statsDirectory, ibkeVersion: IBKECommand.version))[0].moment.matrix
                                             }, cacheDirectory: statsDirectory)
        let request = try EditRequest(prompt: prompt, subject: subject, targetNew: target).prepared(for: loaded)
        // The original answer: the unedited model's greedy continuation of the prompt, as long as the target.
        let original = try loaded.greedyContinuations([request.prompt], maxTokens: request.target.count,
                                                      stopTokens: loaded.tokenizer.stopTokenIDs)[0]
        let before = try Snapshot(loaded, request: request, original: original, checks: check, unrelated: unrelated,
                                  maxTokens: maxTokens)

        let start = Date()
        var delta = try editor.edit([request], in: loaded)
        delta.metadata["ibke.model_sha256"] = try loaded.contentHash()
        let applied = try loaded.transformer.apply(delta, source: method)
        let seconds = Date().timeIntervalSince(start)
        let after = try Snapshot(loaded, request: request, original: original, checks: check, unrelated: unrelated,
                                 maxTokens: maxTokens)
        applied.revert()

        let text = request.request.text
        print("edit: \(quoted(text)) → \(quoted(EditRequest.continuation(target))) with \(method) in \(String(format: "%.2f", seconds)) s")
        let originalText = loaded.tokenizer.decode(original, skipSpecialTokens: true)
        let rows = [("", "before", "after"),
                    ("P(\(quoted(EditRequest.continuation(target))))", String(format: "%.4f", before.targetProbability),
                     String(format: "%.4f", after.targetProbability)),
                    ("P(\(quoted(originalText))) (original answer)", String(format: "%.4f", before.originalProbability),
                     String(format: "%.4f", after.originalProbability))]
        let width = rows.map(\.0.count).max()!
        for (label, b, a) in rows {
            print(label.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + String(repeating: " ", count: max(0, 8 - b.count)) + b
                + "  " + String(repeating: " ", count: max(0, 8 - a.count)) + a)
        }
        print("top-5 before: \(before.top)")
        print("top-5 after:  \(after.top)")
        for (b, a) in zip(before.generations, after.generations) {
            print("\n\(b.0)\n  before: \(quoted(b.1))\n  after:  \(quoted(a.1))")
        }
        if let saveDelta {
            try delta.save(to: URL(fileURLWithPath: saveDelta))
            log("wrote the delta to \(saveDelta)")
        }
    }
}

/// What `ibke edit` shows of the model at one moment.
private struct Snapshot {
    var targetProbability: Double
    var originalProbability: Double
    var top: String
    var generations: [(String, String)]

    init(_ model: LanguageModel, request: PreparedRequest, original: [Int], checks: [String], unrelated: String,
         maxTokens: Int) throws {
        let scores = try model.score([ContinuationRequest(prompt: request.prompt, target: request.target),
                                      ContinuationRequest(prompt: request.prompt, target: original.isEmpty ? request.target : original)])
        targetProbability = exp(Double(scores[0].totalLogProb))
        originalProbability = exp(Double(scores[1].totalLogProb))
        top = try model.topNextTokens(request.prompt, k: 5).map {
            "\(quoted(model.tokenizer.decode([$0.id], skipSpecialTokens: false))) \(String(format: "%.3f", exp($0.logProb)))"
        }.joined(separator: ", ")
        let prompts = [("prompt: " + request.request.text, request.prompt)]
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
