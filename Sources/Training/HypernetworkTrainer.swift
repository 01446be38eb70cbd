import Editing
import Foundation
import Models
import TensorCore

/// Meta-trains a ``HypernetworkEditor`` on a frozen model (IBKE.md §4.2): one step edits a
/// batch of training requests with the current editor, measures the edited model on the edits,
/// their paraphrases and unrelated prompts, and moves the editor (and its step sizes) down
/// the gradient of `λ_rel·NLL(edit) + λ_gen·NLL(paraphrase) + λ_loc·KL(pre ‖ post) + β·KL(q(z|e) ‖ N(0, I))`.
///
/// The blocks below the lowest edited one do not change, so each sample's residual entering
/// that block is computed once and cached (``Prefix``); every pass of every step runs only the
/// edited blocks and the output head, and every backward stops at the lowest edited block.
public final class HypernetworkTrainer: @unchecked Sendable {
    public let model: LanguageModel
    public let editor: HypernetworkEditor
    public let settings: TrainingSettings
    public let training: [TrainingSample]
    public let validation: [TrainingSample]
    /// Steps taken (the next step's index).
    public internal(set) var step = 0
    let networkOptimizer: Adam
    let stepSizeOptimizer: Adam
    var lastAcceptedLoss: Double?
    private let lowestLayer: Int
    private var trainingPrefixes: [Int: Prefix] = [:]
    private var validationPrefixes: [Int: Prefix] = [:]
    /// Pre-edit argmax at each validation sample's locality positions.
    private var validationReference: [Int: [Int]] = [:]

    public init(model: LanguageModel, editor: HypernetworkEditor, settings: TrainingSettings,
                training: [TrainingSample], validation: [TrainingSample]) {
        precondition(!training.isEmpty, "no training samples")
        self.model = model
        self.editor = editor
        self.settings = settings
        self.training = training
        self.validation = validation
        lowestLayer = editor.settings.layers.min()!
        networkOptimizer = Adam(parameters: editor.parameterBanks.map(\.values), learningRate: settings.learningRate)
        stepSizeOptimizer = Adam(parameters: [editor.stepSizes], learningRate: settings.stepSizeLearningRate)
    }

    /// What one step measured (losses unweighted: NLLs are token means, KLs position means).
    public struct StepReport: Sendable {
        public var step: Int
        /// The weighted total that was minimised.
        public var loss: Double
        public var reliabilityNLL: Double
        public var generalityNLL: Double
        public var localityKL: Double
        /// The latent KL per latent vector (per row for the bottleneck; 0 for MEND).
        public var latentKL: Double
        public var beta: Double
        /// The edit loss before the edit.
        public var preEditNLL: Double
        public var gradientNorm: Double
        /// True when the step was discarded as a loss spike (IBKE.md §4.4).
        public var skipped: Bool
    }

    /// The training samples of step `step`: an epoch-wise permutation seeded by the seed and the
    /// epoch, so a resumed run sees the same order.
    func batch(at step: Int) -> [Int] {
        let n = training.count, b = settings.batchSize
        return (0..<b).map { j in
            let position = step * b + j, epoch = position / n
            var rng = SplitMix64(seed: settings.seed &+ 0x5851_F42D &* UInt64(epoch + 1))
            var order = Array(0..<n)
            order.shuffle(using: &rng)
            return order[position % n]
        }
    }

    private func prefix(_ sample: TrainingSample, index: Int, validation isValidation: Bool) throws -> Prefix {
        if let p = isValidation ? validationPrefixes[index] : trainingPrefixes[index] { return p }
        let p = try model.transformer.prefix(sample.sequences, layers: lowestLayer)
        if isValidation { validationPrefixes[index] = p } else { trainingPrefixes[index] = p }
        return p
    }

    /// One training step.
    public func trainStep() throws -> StepReport {
        let transformer = model.transformer, v = model.config.vocabularySize
        let indices = batch(at: step)
        let samples = indices.map { training[$0] }
        let prefixes = try zip(samples, indices).map { try prefix($0, index: $1, validation: false) }

        // The edit's gradient signal on the unedited model.
        let signal = try GradientSignal.capture(
            samples.map(\.edit), transformer: transformer, modules: editor.modules, rows: editor.settings.rows,
            prefix: Prefix.joined(prefixes.map { $0.selecting([0]) }))
        let updating = settings.freezeStatisticsAfter.map { step < $0 } ?? true
        let inputs = editor.encode(signal, updatingStatistics: updating)
        var noise = SplitMix64(seed: settings.seed ^ (0xA076_1D64_78BD_642F &* UInt64(step + 1)))
        let pass = editor.settings.design == .mend
            ? editor.run(inputs) : withUnsafeMutablePointer(to: &noise) { editor.run(inputs, noise: $0) }
        let updates = editor.denseUpdates(pass)

        // Sequences: edits, then paraphrases (cross-entropy), then locality prompts (KL).
        let b = samples.count
        var ceParts: [Prefix] = [], klParts: [Prefix] = []
        var ceTargets: [Int] = [], ceWeights: [Float] = [], cePositions: [[Int]] = []
        var reliabilityRows = 0
        var klPositions: [[Int]] = [], klWeights: [Float] = []
        for (s, p) in zip(samples, prefixes) {
            ceParts.append(p.selecting([0]))
            cePositions.append(GradientSignal.teacherForced([s.edit]).positions[0])
            ceTargets += s.edit.target
            ceWeights += Array(repeating: 1 / Float(b * s.edit.target.count), count: s.edit.target.count)
            reliabilityRows += s.edit.target.count
        }
        for (s, p) in zip(samples, prefixes) {
            ceParts.append(p.selecting(Array(1...s.generality.count)))
            for g in s.generality {
                cePositions.append(TrainingSample.positions(g))
                ceTargets += g.target
                ceWeights += Array(repeating: 1 / Float(b * s.generality.count * g.target.count), count: g.target.count)
            }
        }
        for (s, p) in zip(samples, prefixes) {
            let first = 1 + s.generality.count
            klParts.append(p.selecting(Array(first..<(first + s.locality.count))))
            for l in s.locality {
                klPositions.append(TrainingSample.positions(l))
                klWeights += Array(repeating: 1 / Float(b * s.locality.count * l.target.count), count: l.target.count)
            }
        }
        let klPrefix = Prefix.joined(klParts)
        let reference = try transformer.forward(klPrefix, logits: .positions(klPositions)).logits

        let interventions = zip(editor.modules, updates).map { Intervention.weightDelta($0, $1) }
        let tape = try transformer.record(Prefix.joined(ceParts + klParts), interventions: interventions,
                                          logits: .positions(cePositions + klPositions))
        let ceRows = ceTargets.count, klRows = klWeights.count
        let dLogits = Tensor(zeros: [ceRows + klRows, v])
        let logits = tape.logits.pointer
        // Reliability and generality rows are contiguous; each part's NLL is its own mean.
        let relWeights = Array(ceWeights.prefix(reliabilityRows)), genWeights = Array(ceWeights.dropFirst(reliabilityRows))
        let reliability = crossEntropy(logits, rows: 0..<reliabilityRows, targets: ceTargets, weights: relWeights,
                                       dLogits: dLogits, scale: settings.reliabilityWeight)
        let generality = crossEntropy(logits, rows: reliabilityRows..<ceRows, targets: ceTargets, weights: genWeights,
                                      dLogits: dLogits, scale: settings.generalityWeight)
        let locality = klWeights.withUnsafeBufferPointer { w in
            Losses.klDivergence(reference: reference.pointer, ldReference: v, edited: logits + ceRows * v, ldEdited: v,
                                rows: klRows, vocabularySize: v, weights: w.baseAddress!,
                                dEdited: dLogits.pointer + ceRows * v, ldDEdited: v)
        }
        NormClipping.scale(dLogits.pointer + ceRows * v, count: klRows * v, by: Float(settings.localityWeight))

        let beta = settings.beta(atStep: step)
        let latentKL = pass.latentCount > 0 ? pass.klSum / Double(pass.latentCount) : 0
        let total = settings.reliabilityWeight * Double(reliability) + settings.generalityWeight * Double(generality)
            + settings.localityWeight * Double(locality) + beta * latentKL
        var report = StepReport(step: step, loss: total, reliabilityNLL: Double(reliability), generalityNLL: Double(generality),
                                localityKL: Double(locality), latentKL: latentKL, beta: beta,
                                preEditNLL: Double(signal.loss), gradientNorm: 0, skipped: false)
        defer { step += 1 }
        guard total.isFinite else { throw EditorError.notFinite(method: editor.name, detail: "the training loss at step \(step)") }
        if let last = lastAcceptedLoss, total > settings.discardLossThreshold, total > settings.discardLossMultiple * last {
            report.skipped = true
            return report
        }
        lastAcceptedLoss = total

        let gradients = tape.backward(dLogits: dLogits)
        let updateGradients = gradients.interventions.prefix(editor.modules.count).map { $0! }
        let networkGradients = editor.parameterBanks.map { $0.makeGradient() }
        let stepSizeGradient = Tensor(zeros: editor.stepSizes.shape)
        editor.backward(pass, updateGradients: updateGradients, klScale: pass.latentCount > 0 ? Float(beta) / Float(pass.latentCount) : 0,
                        into: networkGradients, stepSizeGradient: stepSizeGradient)
        let norm = NormClipping.clipGradientNorm(networkGradients + [stepSizeGradient], maxNorm: Float(settings.gradientClip))
        report.gradientNorm = Double(norm)
        guard norm.isFinite else {
            report.skipped = true
            return report
        }
        networkOptimizer.step(gradients: networkGradients)
        stepSizeOptimizer.step(gradients: [stepSizeGradient])
        return report
    }

    /// Mean NLL of `rows` of `logits` (weights as given), its gradient scaled by `scale` into `dLogits`.
    private func crossEntropy(
        _ logits: UnsafePointer<Float>, rows: Range<Int>, targets: [Int], weights: [Float], dLogits: Tensor, scale factor: Double
    ) -> Float {
        guard !rows.isEmpty else { return 0 }
        let v = model.config.vocabularySize
        let loss = targets[rows].withUnsafeBufferPointer { t in
            weights.withUnsafeBufferPointer { w in
                Losses.crossEntropy(logits: logits + rows.lowerBound * v, rows: rows.count, vocabularySize: v, ldLogits: v,
                                    targets: t.baseAddress!, weights: w.baseAddress!,
                                    dLogits: dLogits.pointer + rows.lowerBound * v, ldDLogits: v)
            }
        }
        NormClipping.scale(dLogits.pointer + rows.lowerBound * v, count: rows.count * v, by: Float(factor))
        return loss
    }

    // MARK: Validation

    /// Teacher-forced token accuracies on the validation samples, each edited alone with
    /// `z = μ` (METHODS.md §8.1): reliability and generality against the new target, locality
    /// against the unedited model's predictions.
    public struct Validation: Sendable, Equatable {
        public var reliability: Double
        public var generality: Double
        public var locality: Double
        /// The checkpoint criterion: the mean of the three (IBKE.md §4.5).
        public var score: Double { (reliability + generality + locality) / 3 }
    }

    public func validate() throws -> Validation {
        precondition(!validation.isEmpty, "no validation samples")
        let transformer = model.transformer
        var reliability = 0.0, generality = 0.0, locality = 0.0
        for (i, sample) in validation.enumerated() {
            let p = try prefix(sample, index: i, validation: true)
            let localityIndices = Array((1 + sample.generality.count)..<sample.sequences.count)
            let localityPositions = sample.locality.map(TrainingSample.positions)
            if validationReference[i] == nil {
                let logits = try transformer.forward(p.selecting(localityIndices), logits: .positions(localityPositions)).logits
                validationReference[i] = argmaxRows(logits)
            }
            let signal = try GradientSignal.capture([sample.edit], transformer: transformer, modules: editor.modules,
                                                    rows: editor.settings.rows, prefix: p.selecting([0]))
            let updates = editor.denseUpdates(editor.run(editor.encode(signal, updatingStatistics: false)))
            let interventions = zip(editor.modules, updates).map { Intervention.weightDelta($0, $1) }
            let positions = [GradientSignal.teacherForced([sample.edit]).positions[0]]
                + sample.generality.map(TrainingSample.positions) + localityPositions
            let predicted = argmaxRows(try transformer.forward(p, interventions: interventions, logits: .positions(positions)).logits)
            var row = 0
            func accuracy(_ targets: [Int]) -> Double {
                defer { row += targets.count }
                return Double(zip(predicted[row..<(row + targets.count)], targets).filter { $0 == $1 }.count) / Double(targets.count)
            }
            reliability += accuracy(sample.edit.target)
            generality += sample.generality.map { accuracy($0.target) }.reduce(0, +) / Double(sample.generality.count)
            let reference = validationReference[i]!
            locality += accuracy(reference)  // every locality position, against the pre-edit argmax
        }
        let n = Double(validation.count)
        return Validation(reliability: reliability / n, generality: generality / n, locality: locality / n)
    }

    private func argmaxRows(_ logits: Tensor) -> [Int] {
        let v = logits.shape[1]
        return (0..<logits.shape[0]).map { Models.argmax(logits.pointer + $0 * v, count: v) }
    }
}
