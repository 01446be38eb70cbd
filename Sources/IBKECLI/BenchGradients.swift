import Foundation
import Models
import TensorCore

/// The gradient measurements of `ibke bench --gradients` (issue 3's speed and memory
/// criteria): a batch of prompts, a delta at the MLP output of one layer at each prompt's
/// last token, cross-entropy at the last position.
func benchGradients(_ transformer: Transformer, layer: Int, prompts: Int, tokens: Int, steps: Int, repeats: Int) throws {
    let config = transformer.config
    let v = config.vocabularySize
    var rng = SplitMix64(seed: 7)
    let batch = (0..<prompts).map { _ in (0..<tokens).map { _ in Int(rng.next() % UInt64(v)) } }
    let targets = (0..<prompts).map { _ in Int(rng.next() % UInt64(v)) }
    let lastRows = (0..<prompts).map { $0 * tokens + tokens - 1 }
    let delta = Tensor(zeros: [config.hiddenSize])
    let down = ParameterID(layer: layer, .feedForwardDown)
    func interventions() -> [Intervention] { [.add(.feedForwardOutput, layer: layer, delta: delta, rows: lastRows)] }
    func loss(_ tape: Tape) -> (Float, Tensor) {
        let dLogits = Tensor(zeros: tape.logits.shape)
        let value = Losses.crossEntropy(
            logits: tape.logits.pointer, rows: prompts, vocabularySize: v, ldLogits: v,
            targets: targets, dLogits: dLogits.pointer, ldDLogits: v)
        return (value, dLogits)
    }
    print("gradients: \(prompts) prompts × \(tokens) tokens, delta at ffn output of layer \(layer), logits at the last token")

    var prefix = try transformer.prefix(batch, layers: layer)
    let full = best(of: repeats) { _ = try? transformer.forward(batch, logits: .last) }
    let prefixTime = best(of: repeats) { prefix = try! transformer.prefix(batch, layers: layer) }
    let forward = best(of: repeats) { _ = try? transformer.forward(prefix, interventions: interventions(), logits: .last) }
    // Steps of an optimisation: its per-step time is compared with the median, not the best,
    // of single steps, since a 20-step loop averages over the machine's noise.
    let stepTimes = times(max(repeats, 5)) {
        let tape = try! transformer.record(prefix, interventions: interventions(), logits: .last)
        _ = tape.backward(dLogits: loss(tape).1)
    }
    let deltaOnly = stepTimes.min()!
    let withWeight = best(of: repeats) {
        let tape = try! transformer.record(
            prefix, interventions: interventions(), logits: .last,
            gradients: GradientRequest(parameters: [down]))
        _ = tape.backward(dLogits: loss(tape).1)
    }
    print(String(format: "forward, all layers:                 %7.1f ms", full * 1e3))
    print(String(format: "prefix forward (layers 0..<%d):       %7.1f ms", layer, prefixTime * 1e3))
    print(String(format: "forward from layer %d:                %7.1f ms", layer, forward * 1e3))
    print(
        String(
            format: "forward+backward to the delta:       %7.1f ms  (%.2f× the forward from layer %d; target ≤ 3)", deltaOnly * 1e3,
            deltaOnly / forward, layer))
    print(String(format: "  … and d %@:      %7.1f ms  (%.2f×)", down.name, withWeight * 1e3, withWeight / forward))

    // An optimisation of the delta with prefix reuse: one prefix, then `steps` steps.
    let start = DispatchTime.now().uptimeNanoseconds
    let cached = try transformer.prefix(batch, layers: layer)
    var first: Float = 0
    var last: Float = 0
    var loopSteps: [Double] = []
    for step in 0..<steps {
        let stepStart = DispatchTime.now().uptimeNanoseconds
        defer { loopSteps.append(Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9) }
        let tape = try transformer.record(cached, interventions: interventions(), logits: .last)
        let (value, dLogits) = loss(tape)
        if step == 0 { first = value }
        last = value
        let g = tape.backward(dLogits: dLogits).interventions[0]!
        Kernels.addScaled(g.pointer, -0.5, into: delta.pointer, count: delta.count)
    }
    let loop = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print(
        String(
            format:
                "%d steps with prefix reuse:          %7.1f ms  (%.1f ms a step; bound steps×(f+b) + prefix = %.1f ms with the median f+b, %.1f ms with the best); loss %.3f → %.3f",
            steps, loop * 1e3, loop * 1e3 / Double(steps), (Double(steps) * median(stepTimes) + prefixTime) * 1e3,
            (Double(steps) * deltaOnly + prefixTime) * 1e3, first, last))
    print(
        String(
            format: "  steps of the loop: fastest %.1f ms, median %.1f ms (single f+b: fastest %.1f, median %.1f)", loopSteps.min()! * 1e3,
            median(loopSteps) * 1e3, deltaOnly * 1e3, median(stepTimes) * 1e3))
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    print(String(format: "peak resident memory: %.0f MB", Double(usage.ru_maxrss) / 1024))
}
