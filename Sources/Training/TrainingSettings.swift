import Editing
import Foundation
import ModelFormats

/// How a hypernetwork editor is trained (IBKE.md §2.5, §4): loss weights, the bottleneck's β
/// and its warm-up, the optimisers, the step budget, validation and early stopping. Recorded
/// in every run and saved with the editor.
public struct TrainingSettings: Sendable, Equatable {
    /// Weight of the reliability NLL (the edit itself), λ_rel.
    public var reliabilityWeight = 0.1
    /// Weight of the generality NLL (paraphrases: Sufficiency for Generality), λ_gen.
    public var generalityWeight = 0.1
    /// Weight of the locality KL(pre ‖ post) (Independence for Locality), λ_loc.
    public var localityWeight = 1.0
    /// Relative weight, within the locality KL, of the hard negatives: CounterFact's neighbourhood
    /// prompts (the edit's relation about other subjects). 1 weighs them as the other locality prompts.
    public var neighbourhoodWeight = 1.0
    /// Weight of the unlikelihood of the edit's new object on the neighbourhood prompts,
    /// `−log(1 − p(new))` per target token: what CounterFact's NS counts, which a KL to the
    /// pre-edit distribution barely sees while the new object is still unlikely. 0: off.
    public var unlikelihoodWeight = 0.0
    /// Weight of the latent KL to N(0, I) (Information Transfer Minimisation), β; 0 for MEND.
    public var beta = 1e-3
    /// β rises linearly from 0 over this fraction of ``steps``.
    public var betaWarmup = 0.1
    /// Adam learning rate of the networks.
    public var learningRate = 1e-5
    /// Adam learning rate of the per-matrix step sizes η (MEND's `lr_lr`).
    public var stepSizeLearningRate = 1e-4
    /// Global gradient-norm clip.
    public var gradientClip = 100.0
    /// Requests edited together per step.
    public var batchSize = 1
    /// Step budget.
    public var steps = 20_000
    /// Validate (and checkpoint) every this many steps.
    public var validateEvery = 500
    /// Stop after this many validations without a better score (0: never stop early).
    public var patience = 8
    /// Freeze the gradient normalisation statistics after this many steps (nil: never, as MEND).
    public var freezeStatisticsAfter: Int?
    /// Tokens of the extra corpus locality sample ("wiki" locality, IBKE.md §4.1); 0 turns it off.
    public var corpusLocalityTokens = 32
    /// Skip a step whose loss exceeds both this and ``discardLossMultiple`` × the last accepted one.
    public var discardLossThreshold = 10.0
    public var discardLossMultiple = 5.0
    /// Seed of sampling order and latent noise.
    public var seed: UInt64 = 0

    /// MEND's and IBKE's defaults; MEND has no latent, so β = 0.
    public static func defaults(_ design: HypernetworkSettings.Design) -> TrainingSettings {
        var s = TrainingSettings()
        if design == .mend { s.beta = 0 }
        return s
    }

    /// The keys ``init(reading:design:)`` reads (an editor's settings file may hold both kinds).
    public static let keys = [
        "reliability_weight", "generality_weight", "locality_weight", "beta", "beta_warmup", "lr", "lr_lr",
        "grad_clip", "batch_size", "steps", "validate_every", "patience", "freeze_statistics_after",
        "corpus_locality_tokens", "discard_loss_threshold", "discard_loss_multiple", "training_seed",
    ]

    /// Reads the training keys of a JSON/YAML object over the defaults; other keys are left to
    /// ``HypernetworkSettings``.
    public init(reading reader: inout HyperparameterReader, design: HypernetworkSettings.Design) throws {
        self = .defaults(design)
        reliabilityWeight = try reader.double("reliability_weight", default: reliabilityWeight)
        generalityWeight = try reader.double("generality_weight", default: generalityWeight)
        localityWeight = try reader.double("locality_weight", "cloc", default: localityWeight)
        neighbourhoodWeight = try reader.double("neighbourhood_weight", default: neighbourhoodWeight)
        unlikelihoodWeight = try reader.double("unlikelihood_weight", default: unlikelihoodWeight)
        beta = try reader.double("beta", default: beta)
        betaWarmup = try reader.double("beta_warmup", default: betaWarmup)
        learningRate = try reader.double("lr", default: learningRate)
        stepSizeLearningRate = try reader.double("lr_lr", default: stepSizeLearningRate)
        gradientClip = try reader.double("grad_clip", default: gradientClip)
        batchSize = try reader.int("batch_size", "n_edits", default: batchSize, in: 1...1024)
        steps = try reader.int("steps", "max_iters", default: steps, in: 1...10_000_000)
        validateEvery = try reader.int("validate_every", "val_interval", default: validateEvery, in: 1...10_000_000)
        patience = try reader.int("patience", default: patience)
        let freeze = try reader.int("freeze_statistics_after", default: -1)
        freezeStatisticsAfter = freeze >= 0 ? freeze : nil
        corpusLocalityTokens = try reader.int("corpus_locality_tokens", default: corpusLocalityTokens, in: 0...4096)
        discardLossThreshold = try reader.double("discard_loss_threshold", default: discardLossThreshold)
        discardLossMultiple = try reader.double("discard_loss_multiple", default: discardLossMultiple)
        seed = UInt64(try reader.int("training_seed", default: Int(seed)))
        guard reliabilityWeight >= 0, generalityWeight >= 0, localityWeight >= 0, neighbourhoodWeight >= 0, unlikelihoodWeight >= 0,
            beta >= 0, (0...1).contains(betaWarmup),
            learningRate > 0, stepSizeLearningRate >= 0, gradientClip > 0, batchSize >= 1, steps >= 1,
            validateEvery >= 1, patience >= 0, corpusLocalityTokens >= 0
        else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "training settings",
                expected:
                    "non-negative weights and β, beta_warmup in [0, 1], lr > 0, grad_clip > 0, batch_size ≥ 1, steps ≥ 1, validate_every ≥ 1"
            )
        }
    }

    init() {}

    /// β at `step` (linear warm-up).
    public func beta(atStep step: Int) -> Double {
        let warmupSteps = betaWarmup * Double(steps)
        guard warmupSteps >= 1 else { return beta }
        return beta * min(1, Double(step) / warmupSteps)
    }

    public var json: JSONValue {
        var object: JSONObject = [
            "reliability_weight": .double(reliabilityWeight), "generality_weight": .double(generalityWeight),
            "locality_weight": .double(localityWeight), "beta": .double(beta), "beta_warmup": .double(betaWarmup),
            "lr": .double(learningRate), "lr_lr": .double(stepSizeLearningRate), "grad_clip": .double(gradientClip),
            "batch_size": .int(batchSize), "steps": .int(steps), "validate_every": .int(validateEvery),
            "patience": .int(patience),
        ]
        object.updateValue(freezeStatisticsAfter.map { .int($0) } ?? .null, forKey: "freeze_statistics_after")
        if neighbourhoodWeight != 1 { object.updateValue(.double(neighbourhoodWeight), forKey: "neighbourhood_weight") }
        if unlikelihoodWeight != 0 { object.updateValue(.double(unlikelihoodWeight), forKey: "unlikelihood_weight") }
        object.updateValue(.int(corpusLocalityTokens), forKey: "corpus_locality_tokens")
        object.updateValue(.double(discardLossThreshold), forKey: "discard_loss_threshold")
        object.updateValue(.double(discardLossMultiple), forKey: "discard_loss_multiple")
        object.updateValue(.int(Int(seed)), forKey: "training_seed")
        object.updateValue(.string("kl(pre ‖ post)"), forKey: "locality_kl")
        object.updateValue(.string("mean_per_latent"), forKey: "itm_reduction")
        return .object(object)
    }
}
