import Foundation
import Models
import TensorCore

/// How far a few gradient reads move a request's value: the diagnostic behind the design of
/// IBKE's value write (Docs/ibke.md). δ is added to `layer`'s output at the subject's last token
/// of the bare prompt (where ROME and MEMIT write) and takes `steps` steps along the normalised
/// negative gradient of the target NLL, each of the length in `scales` (× ‖v₀‖, the unedited
/// activation's norm) that lowers the NLL most (a line search: what the best one-step predictor
/// along the gradient could do). The reference
/// is ``ValueOptimization``'s Adam optimisation of δ on the same bare prompt.
public enum ValueReach {
    public struct Result: Sendable {
        /// Target NLL (token mean) on the prompt: before any step, then after each.
        public var promptLoss: [Float]
        /// The same for the paraphrase, with the same δ at its subject's last token.
        public var paraphraseLoss: [Float]
        /// The step length each line search chose, over ‖v₀‖.
        public var chosenScales: [Float]
        /// After the reference optimisation.
        public var referencePromptLoss: Float
        public var referenceParaphraseLoss: Float
        /// cos(−g₀, δ*): the first gradient against the reference's δ.
        public var initialGradientCosine: Float
        /// ‖δ‖ / ‖v₀‖ after the line-searched steps, and the reference's.
        public var searchedNorm: Float
        public var referenceNorm: Float
        /// Seconds per gradient read: a forward and backward of the tokens from the subject's last
        /// on, through the blocks from `layer` up (``Reader``).
        public var secondsPerRead: Double
    }

    /// - Parameter paraphrase: the same subject and target in other words.
    public static func measure(
        _ request: PreparedRequest, paraphrase: PreparedRequest, model: LanguageModel, layer: Int,
        settings: ValueOptimizationSettings, steps: Int, scales: [Float]
    ) throws -> Result {
        let width = HookPoint.layerOutput.width(model.config)
        let hook = HookKey(.layerOutput, layer: layer)
        let v0 = try LocateThenEdit.subjectActivations([request], at: [hook], model: model)[hook]![0]
        let v0Norm = Float(NormClipping.l2Norm(v0, count: width))
        var delta = [Float](repeating: 0, count: width)
        let prompt = try Reader(request, model: model, layer: layer)
        let paraphrased = try Reader(paraphrase, model: model, layer: layer)
        var result = Result(
            promptLoss: [try prompt.loss(delta).value], paraphraseLoss: [try paraphrased.loss(delta).value],
            chosenScales: [], referencePromptLoss: 0, referenceParaphraseLoss: 0, initialGradientCosine: 0,
            searchedNorm: 0, referenceNorm: 0, secondsPerRead: 0)
        var readSeconds = 0.0
        for _ in 0..<steps {
            let start = DispatchTime.now().uptimeNanoseconds
            let g = try prompt.loss(delta, gradient: true).gradient
            readSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let norm = Float(NormClipping.l2Norm(g, count: width))
            guard norm > 0 else { break }
            var best = (loss: Float.infinity, scale: Float(0), delta: delta)
            for scale in scales.map({ $0 * v0Norm }) {
                let candidate = zip(delta, g).map { $0 - scale * $1 / norm }
                let l = try prompt.loss(candidate).value
                if l < best.loss { best = (l, scale, candidate) }
            }
            delta = best.delta
            result.promptLoss.append(best.loss)
            result.chosenScales.append(best.scale / v0Norm)
            result.paraphraseLoss.append(try paraphrased.loss(delta).value)
        }
        result.secondsPerRead = readSeconds / Double(max(1, result.chosenScales.count))
        result.searchedNorm = Float(NormClipping.l2Norm(delta, count: width)) / v0Norm

        let optimization = ValueOptimization(point: .layerOutput, layer: layer, settings: settings, method: "value-reach")
        let reference = try optimization.run([request], contexts: [[request]], model: model)
        let star = zip(reference.values[0], reference.initial[0]).map { $0 - $1 }
        result.referencePromptLoss = try prompt.loss(star).value
        result.referenceParaphraseLoss = try paraphrased.loss(star).value
        let starNorm = Float(NormClipping.l2Norm(star, count: width))
        result.referenceNorm = starNorm / v0Norm
        let g0 = reference.initialGradients[0]
        let g0Norm = Float(NormClipping.l2Norm(g0, count: width))
        if g0Norm > 0 && starNorm > 0 {
            result.initialGradientCosine = -zip(g0, star).reduce(0) { $0 + $1.0 * $1.1 } / (g0Norm * starNorm)
        }
        return result
    }

    /// One prompt's target NLL as a function of δ: the tokens before the subject's last one and
    /// the blocks below `layer` run once, so each read re-runs only the tokens from the subject's
    /// last on, from `layer` up (as ``ValueOptimization`` does).
    struct Reader {
        let request: PreparedRequest
        let model: LanguageModel
        let layer: Int
        let prefix: Prefix

        init(_ request: PreparedRequest, model: LanguageModel, layer: Int) throws {
            let sequence = request.prompt + request.target.dropLast()
            let split = request.subjectLast
            self.request = request
            self.model = model
            self.layer = layer
            prefix = try model.transformer.prefix([Array(sequence[split...])], past: [Array(sequence[..<split])], layers: layer)
        }

        /// The target NLL (token mean) with δ added at `layer`'s output at the subject's last
        /// token, and its gradient with respect to δ when asked.
        func loss(_ delta: [Float], gradient: Bool = false) throws -> (value: Float, gradient: [Float]) {
            let first = request.prompt.count - 1 - request.subjectLast
            let tape = try model.transformer.record(
                prefix,
                interventions: [.add(.layerOutput, layer: layer, delta: Tensor(shape: [delta.count], values: delta), rows: [0])],
                logits: .positions([Array(first..<(first + request.target.count))]))
            let v = model.config.vocabularySize
            let dLogits = gradient ? Tensor(zeros: [request.target.count, v]) : nil
            let value = request.target.withUnsafeBufferPointer { targets in
                Losses.crossEntropy(
                    logits: tape.logits.pointer, rows: request.target.count, vocabularySize: v, ldLogits: v,
                    targets: targets.baseAddress!, dLogits: dLogits?.pointer, ldDLogits: v)
            }
            guard value.isFinite else { throw EditorError.notFinite(method: "value-reach", detail: "the target NLL") }
            guard let dLogits else { return (value, []) }
            return (value, tape.backward(dLogits: dLogits).interventions[0]!.scalars)
        }
    }
}
