import Editing
import Evaluation
import Foundation
import Models

/// `ibke bench --value-reach N --dataset SPEC`: how far line-searched gradient steps on the
/// subject's value move the target, against ROME/MEMIT's Adam optimisation (``ValueReach``).
func benchValueReach(model: LanguageModel, dataset spec: DatasetSpec, records: Int, steps: Int, layer: Int?) throws {
    let h = MassEditingHyperparameters.defaults(layerCount: model.config.layerCount, feedForwardSize: model.config.feedForwardSize)
    let layer = layer ?? h.layers.last!
    let scales: [Float] = [1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2, 1, 2, 4]
    var results: [ValueReach.Result] = []
    var skipped = 0
    for evalCase in try Dataset.load(spec, limit: records).cases {
        let request = evalCase.requests[0]
        let paraphraseRoles: Set<Probe.Role> = [.generality, .paraphrase]
        guard let text = evalCase.probes.first(where: { paraphraseRoles.contains($0.role) })?.prompt,
            let paraphrase = try? EditRequest(prompt: text, subject: request.subject, targetNew: request.targetNew).prepared(for: model)
        else {
            skipped += 1
            continue
        }
        results.append(
            try ValueReach.measure(
                try request.prepared(for: model), paraphrase: paraphrase, model: model, layer: layer, settings: h.optimization,
                steps: steps, scales: scales))
        log("value reach: \(results.count) records")
    }
    guard !results.isEmpty else { throw CLIError("\(spec.path): no record has a paraphrase that names its subject") }
    print(
        "value reach at layer \(layer)'s output, subject's last token, bare prompt: \(results.count) records of \(spec) (\(skipped) without a paraphrase naming the subject)"
    )
    print("step lengths searched: \(scales.map { String(format: "%g", $0) }.joined(separator: ", ")) × ‖v₀‖")
    print("| δ | prompt NLL (median) | exp(−NLL) > 1/2 | paraphrase NLL (median) | exp(−NLL) > 1/2 | step/‖v₀‖ (median) |")
    print("|---|---|---|---|---|---|")
    func median(_ x: [Float]) -> Float { x.sorted()[x.count / 2] }
    func share(_ x: [Float]) -> Double { 100 * Double(x.filter { $0 < log(2) }.count) / Double(x.count) }
    func row(_ label: String, _ prompt: [Float], _ paraphrase: [Float], _ scale: String) {
        print(
            String(
                format: "| %@ | %.2f | %.0f%% | %.2f | %.0f%% | %@ |", label, median(prompt), share(prompt), median(paraphrase),
                share(paraphrase), scale))
    }
    row("0 (unedited)", results.map { $0.promptLoss[0] }, results.map { $0.paraphraseLoss[0] }, "–")
    for k in 1...steps {
        let done = results.filter { $0.promptLoss.count > k }
        guard !done.isEmpty else { break }
        row(
            "\(k) line-searched gradient step\(k == 1 ? "" : "s")", done.map { $0.promptLoss[k] }, done.map { $0.paraphraseLoss[k] },
            String(format: "%g", median(done.map { $0.chosenScales[k - 1] })))
    }
    row(
        "Adam, \(h.optimization.steps) steps (ROME/MEMIT's)", results.map(\.referencePromptLoss), results.map(\.referenceParaphraseLoss),
        "–")
    let cosine = results.map(\.initialGradientCosine).reduce(0, +) / Float(results.count)
    print(
        String(
            format: "cos(−g₀, δ_Adam) mean %.3f; ‖δ‖/‖v₀‖ median: line search %.2f, Adam %.2f; %.3f s per gradient read",
            cosine, median(results.map(\.searchedNorm)), median(results.map(\.referenceNorm)),
            results.map(\.secondsPerRead).reduce(0, +) / Double(results.count)))
}
