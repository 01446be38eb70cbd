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
/// `@unchecked Sendable`: the step counter, prefix caches and optimiser state change every step,
/// unlocked; one thread at a time (the training loop's) drives a trainer.
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

    public init(
        model: LanguageModel, editor: HypernetworkEditor, settings: TrainingSettings,
        training: [TrainingSample], validation: [TrainingSample]
    ) {
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
        let n = training.count
        let b = settings.batchSize
        return (0..<b).map { j in
            let position = step * b + j
            let epoch = position / n
            var rng = SplitMix64(seed: settings.seed &+ 0x5851_F42D &* UInt64(epoch + 1))
            var order = Array(0..<n)
            order.shuffle(using: &rng)
            return order[position % n]
        }
    }

    private func prefix(_ sample: TrainingSample, index: Int, validation isValidation: Bool) throws -> Prefix {
        if let p = isValidation ? validationPrefixes[index] : trainingPrefixes[index] { return p }
        // The neighbour targets only when the unlikelihood term reads them.
        let p = try model.transformer.prefix(sample.sequences(negatives: settings.unlikelihoodWeight > 0), layers: lowestLayer)
        if isValidation { validationPrefixes[index] = p } else { trainingPrefixes[index] = p }
        return p
    }

    /// One training step.
    public func trainStep() throws -> StepReport {
        let transformer = model.transformer
        let v = model.config.vocabularySize
        let indices = batch(at: step)
        let samples = indices.map { training[$0] }
        let prefixes = try zip(samples, indices).map { try prefix($0, index: $1, validation: false) }

        // The edit's gradient signal on the unedited model (and, for later iterations, on the
        // model with the earlier ones' updates).
        var noise = SplitMix64(seed: settings.seed ^ (0xA076_1D64_78BD_642F &* UInt64(step + 1)))
        let (passes, updates, preEditLoss) = try withUnsafeMutablePointer(to: &noise) { rng in
            try edit(
                samples.map(\.edit), prefix: Prefix.joined(prefixes.map { $0.selecting([0]) }),
                updatingStatistics: settings.freezeStatisticsAfter.map { step < $0 } ?? true,
                noise: editor.settings.design == .mend ? nil : rng)
        }

        // Sequences: edits, then paraphrases (cross-entropy), then locality prompts (KL).
        let b = samples.count
        var ceParts: [Prefix] = []
        var klParts: [Prefix] = []
        var ceTargets: [Int] = []
        var ceWeights: [Float] = []
        var cePositions: [[Int]] = []
        var reliabilityRows = 0
        var klPositions: [[Int]] = []
        var klWeights: [Float] = []
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
            // Each prompt's share of the locality mean; neighbourhood prompts count `neighbourhoodWeight` times.
            let shares = s.neighbourhood.map { $0 ? Float(settings.neighbourhoodWeight) : 1 }
            let total = shares.reduce(0, +)
            for (l, share) in zip(s.locality, shares) {
                klPositions.append(TrainingSample.positions(l))
                klWeights += Array(repeating: share / (Float(b) * total * Float(l.target.count)), count: l.target.count)
            }
        }
        let klPrefix = Prefix.joined(klParts)
        let reference = try transformer.forward(klPrefix, logits: .positions(klPositions)).logits
        // The new object after the neighbourhood prompts (unlikelihood; none when its weight is 0).
        var ulParts: [Prefix] = []
        var ulPositions: [[Int]] = []
        var ulTargets: [Int] = []
        var ulWeights: [Float] = []
        if settings.unlikelihoodWeight > 0 {
            for (s, p) in zip(samples, prefixes) where s.neighbourhood.contains(true) {
                let first = 1 + s.generality.count + s.locality.count
                let negatives = s.neighbourTargets
                ulParts.append(p.selecting(Array(first..<(first + negatives.count))))
                for n in negatives {
                    ulPositions.append(TrainingSample.positions(n))
                    ulTargets += n.target
                    ulWeights += Array(repeating: 1 / Float(b * negatives.count * n.target.count), count: n.target.count)
                }
            }
        }

        let interventions = zip(editor.modules, updates).map { Intervention.weightDelta($0, $1) }
        let tape = try transformer.record(
            Prefix.joined(ceParts + klParts + ulParts), interventions: interventions,
            logits: .positions(cePositions + klPositions + ulPositions))
        let ceRows = ceTargets.count
        let klRows = klWeights.count
        let ulRows = ulTargets.count
        let dLogits = Tensor(zeros: [ceRows + klRows + ulRows, v])
        let logits = tape.logits.pointer
        // Reliability and generality rows are contiguous; each part's NLL is its own mean.
        let relWeights = Array(ceWeights.prefix(reliabilityRows))
        let genWeights = Array(ceWeights.dropFirst(reliabilityRows))
        let reliability = crossEntropy(
            logits, rows: 0..<reliabilityRows, targets: ceTargets, weights: relWeights,
            dLogits: dLogits, scale: settings.reliabilityWeight)
        let generality = crossEntropy(
            logits, rows: reliabilityRows..<ceRows, targets: ceTargets, weights: genWeights,
            dLogits: dLogits, scale: settings.generalityWeight)
        let locality = klWeights.withUnsafeBufferPointer { w in
            Losses.klDivergence(
                reference: reference.pointer, ldReference: v, edited: logits + ceRows * v, ldEdited: v,
                rows: klRows, vocabularySize: v, weights: w.baseAddress!,
                dEdited: dLogits.pointer + ceRows * v, ldDEdited: v)
        }
        NormClipping.scale(dLogits.pointer + ceRows * v, count: klRows * v, by: Float(settings.localityWeight))
        let unlikelihood = Self.unlikelihood(
            logits + (ceRows + klRows) * v, rows: ulRows, vocabularySize: v, targets: ulTargets,
            weights: ulWeights, scale: Float(settings.unlikelihoodWeight),
            dLogits: dLogits.pointer + (ceRows + klRows) * v)

        let beta = settings.beta(atStep: step)
        let latentCount = passes.reduce(0) { $0 + $1.latentCount }
        let latentKL = latentCount > 0 ? passes.reduce(0) { $0 + $1.klSum } / Double(latentCount) : 0
        let total =
            settings.reliabilityWeight * Double(reliability) + settings.generalityWeight * Double(generality)
            + settings.localityWeight * Double(locality) + settings.unlikelihoodWeight * unlikelihood + beta * latentKL
        var report = StepReport(
            step: step, loss: total, reliabilityNLL: Double(reliability), generalityNLL: Double(generality),
            localityKL: Double(locality), latentKL: latentKL, beta: beta,
            preEditNLL: Double(preEditLoss), gradientNorm: 0, skipped: false)
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
        // Every iteration's update adds to the edited weights, so each receives the same G_m;
        // later iterations' inputs are taken as given (first order, as a learned optimiser's unroll).
        for pass in passes {
            editor.backward(
                pass, updateGradients: updateGradients, klScale: latentCount > 0 ? Float(beta) / Float(latentCount) : 0,
                into: networkGradients, stepSizeGradient: stepSizeGradient)
        }
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

    /// The editor's passes over `requests` and the dense update they sum to, one pass per
    /// iteration, each reading the gradient signal on the model with the earlier passes' updates;
    /// with the edit loss before the edit.
    private func edit(
        _ requests: [PreparedRequest], prefix: Prefix, updatingStatistics: Bool, noise: UnsafeMutablePointer<SplitMix64>?
    ) throws -> (passes: [HypernetworkEditor.Pass], updates: [Tensor], preEditLoss: Float) {
        var passes: [HypernetworkEditor.Pass] = []
        var total: [Tensor] = []
        var preEditLoss: Float = 0
        let neighbours = try editor.neighbourSpans(requests, model: model)
        for iteration in 0..<editor.settings.iterations {
            let interventions = zip(editor.modules, total).map { Intervention.weightDelta($0, $1) }
            let signal = try GradientSignal.capture(
                requests, transformer: model.transformer, modules: editor.modules,
                rows: editor.settings.rows, prefix: prefix, interventions: interventions)
            if iteration == 0 { preEditLoss = signal.loss }
            let pass = try editor.run(
                editor.encode(signal, updatingStatistics: updatingStatistics), signal: signal,
                neighbours: neighbours, noise: noise)
            let updates = editor.denseUpdates(pass)
            if total.isEmpty {
                total = updates
            } else {
                for (t, u) in zip(total, updates) { Kernels.add(u.pointer, into: t.pointer, count: t.count) }
            }
            passes.append(pass)
        }
        return (passes, total, preEditLoss)
    }

    /// `Σ_r w_r · −log(1 − p_r(target_r))` over softmax rows, and its gradient times `scale` into
    /// `dLogits`: `∂/∂z = w · p_y/(1 − p_y) · (e_y − p)`.
    static func unlikelihood(
        _ logits: UnsafePointer<Float>, rows: Int, vocabularySize v: Int, targets: [Int], weights: [Float], scale: Float,
        dLogits: UnsafeMutablePointer<Float>
    ) -> Double {
        var total = 0.0
        var p = [Float](repeating: 0, count: v)
        for r in 0..<rows {
            let z = logits + r * v
            let y = targets[r]
            var maximum = -Float.infinity
            for j in 0..<v { maximum = max(maximum, z[j]) }
            var sum: Float = 0
            for j in 0..<v {
                p[j] = expf(z[j] - maximum)
                sum += p[j]
            }
            for j in 0..<v { p[j] /= sum }
            let py = min(p[y], 1 - 1e-6)
            total += Double(weights[r]) * -log(1 - Double(py))
            let factor = scale * weights[r] * py / (1 - py)
            let d = dLogits + r * v
            for j in 0..<v { d[j] = -factor * p[j] }
            d[y] += factor
        }
        return total
    }

    /// Mean NLL of `rows` of `logits` (weights as given), its gradient scaled by `scale` into `dLogits`.
    private func crossEntropy(
        _ logits: UnsafePointer<Float>, rows: Range<Int>, targets: [Int], weights: [Float], dLogits: Tensor, scale factor: Double
    ) -> Float {
        guard !rows.isEmpty else { return 0 }
        let v = model.config.vocabularySize
        let loss = targets[rows].withUnsafeBufferPointer { t in
            weights.withUnsafeBufferPointer { w in
                Losses.crossEntropy(
                    logits: logits + rows.lowerBound * v, rows: rows.count, vocabularySize: v, ldLogits: v,
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
        var reliability = 0.0
        var generality = 0.0
        var locality = 0.0
        for (i, sample) in validation.enumerated() {
            let p = try prefix(sample, index: i, validation: true)
            let localityIndices = Array((1 + sample.generality.count)..<(1 + sample.generality.count + sample.locality.count))
            let localityPositions = sample.locality.map(TrainingSample.positions)
            if validationReference[i] == nil {
                let logits = try transformer.forward(p.selecting(localityIndices), logits: .positions(localityPositions)).logits
                validationReference[i] = argmaxRows(logits)
            }
            let updates = try edit([sample.edit], prefix: p.selecting([0]), updatingStatistics: false, noise: nil).updates
            let interventions = zip(editor.modules, updates).map { Intervention.weightDelta($0, $1) }
            let positions =
                [GradientSignal.teacherForced([sample.edit]).positions[0]]
                + sample.generality.map(TrainingSample.positions) + localityPositions
            let scored = p.selecting(Array(0..<(1 + sample.generality.count + sample.locality.count)))
            let predicted = argmaxRows(try transformer.forward(scored, interventions: interventions, logits: .positions(positions)).logits)
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
