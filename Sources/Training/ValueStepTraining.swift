import Editing
import Evaluation
import Foundation
import ModelFormats
import Models
import TensorCore

/// One request of a value-step training set: the edit and a paraphrase that names its subject
/// (nil when the record has none).
public struct ValueStepSample: Sendable {
    public let edit: PreparedRequest
    public let paraphrase: PreparedRequest?

    /// The sample of a zsRE or CounterFact case (its first paraphrase that names the subject).
    public static func make(_ evalCase: EvalCase, model: LanguageModel) throws -> ValueStepSample? {
        guard let request = evalCase.requests.first else { return nil }
        let roles: Set<Probe.Role> = [.generality, .paraphrase]
        let paraphrase = evalCase.probes.filter { roles.contains($0.role) }.lazy.compactMap {
            try? EditRequest(prompt: $0.prompt, subject: request.subject, targetNew: request.targetNew).prepared(for: model)
        }.first
        return ValueStepSample(edit: try request.prepared(for: model), paraphrase: paraphrase)
    }
}

/// How ``ValueStepTrainer`` trains: the `--set` keys of `ibke train --set design=value_steps`.
public struct ValueStepTrainingSettings: Sendable, Equatable {
    public var network = ValueStepNetwork.Settings()
    /// Requests seen in training (each one forward through the reads and one backward).
    /// 1,200 requests at lr 3e-3: the committed editor's run (Docs/ibke.md).
    public var steps = 1_200
    public var batch = 4
    public var learningRate = 3e-3
    public var validateEvery = 200
    public var beta: Float = 1e-3
    public var paraphraseWeight: Float = 1
    public var intermediateWeight: Float = 0.2
    public var seed: UInt64 = 0

    public init() {}

    public init(reading reader: inout HyperparameterReader) throws {
        _ = try reader.string("design", default: "value_steps")
        network.reads = try reader.int("reads", default: network.reads, in: 1...64)
        network.hidden = try reader.int("hidden", default: network.hidden, in: 1...1024)
        network.latent = try reader.int("latent", default: network.latent, in: 1...256)
        steps = try reader.int("steps", default: steps, in: 1...10_000_000)
        batch = try reader.int("batch", default: batch, in: 1...1024)
        learningRate = try reader.double("lr", default: learningRate)
        validateEvery = try reader.int("validate_every", default: validateEvery, in: 1...10_000_000)
        beta = Float(try reader.double("beta", default: Double(beta)))
        paraphraseWeight = Float(try reader.double("paraphrase_weight", default: Double(paraphraseWeight)))
        intermediateWeight = Float(try reader.double("intermediate_weight", default: Double(intermediateWeight)))
        seed = UInt64(try reader.int("seed", default: Int(seed), in: 0...Int.max))
        try reader.finish()
    }
}

/// Trains IBKE's value steps (``ValueStepNetwork``) by Adam on ``ValueStepObjective``, keeping
/// the network with the best validation score: the mean of the shares of validation prompts and
/// paraphrases whose target passes probability ½ (geometric mean over its tokens).
public final class ValueStepTrainer {
    public struct Validation: Sendable {
        public var prompt: Double
        public var paraphrase: Double
        public var finalLoss: Double
        public var score: Double { (prompt + paraphrase) / 2 }
    }

    public enum Event {
        case step(step: Int, finalLoss: Double, promptNLL: Double, paraphraseNLL: Double, divergence: Double)
        case validation(step: Int, Validation, best: Bool)
    }

    public let objective: ValueStepObjective
    public let network: ValueStepNetwork
    public let settings: ValueStepTrainingSettings
    let training: [ValueStepSample]
    let validation: [ValueStepSample]

    public init(
        model: LanguageModel, settings: ValueStepTrainingSettings, training: [ValueStepSample], validation: [ValueStepSample]
    ) throws {
        objective = try ValueStepObjective(model: model)
        objective.beta = settings.beta
        objective.paraphraseWeight = settings.paraphraseWeight
        objective.intermediateWeight = settings.intermediateWeight
        network = ValueStepNetwork(settings: settings.network, width: HookPoint.layerOutput.width(model.config), seed: settings.seed)
        self.settings = settings
        self.training = training
        self.validation = validation
    }

    /// The validation score of the current network (z at its mean).
    public func validate() throws -> Validation {
        var prompt = 0
        var paraphrase = 0
        var paraphrases = 0
        var loss = 0.0
        for sample in validation {
            let m = try objective.run(network, request: sample.edit, paraphrase: sample.paraphrase)
            if m.promptNLL < log(2) { prompt += 1 }
            if let p = m.paraphraseNLL {
                paraphrases += 1
                if p < log(2) { paraphrase += 1 }
            }
            loss += Double(m.finalLoss)
        }
        return Validation(
            prompt: Double(prompt) / Double(validation.count), paraphrase: Double(paraphrase) / Double(max(1, paraphrases)),
            finalLoss: loss / Double(validation.count))
    }

    /// Trains for `settings.steps` requests, validating every `validateEvery` and after the
    /// last; `save` receives the network whenever validation improves.
    public func run(save: (ValueStepNetwork, Validation) throws -> Void, report: (Event) -> Void) throws {
        var rng = SplitMix64(seed: settings.seed &+ 1)
        let gradient = network.bank.makeGradient()
        let adam = Adam(parameters: [network.bank.values], learningRate: settings.learningRate)
        var best = -1.0
        func check(_ step: Int) throws {
            let v = try validate()
            let improved = v.score > best
            if improved {
                best = v.score
                try save(network, v)
            }
            report(.validation(step: step, v, best: improved))
        }
        try check(0)
        for step in 1...settings.steps {
            let sample = training[Int(rng.next() % UInt64(training.count))]
            let m = try objective.run(
                network, request: sample.edit, paraphrase: sample.paraphrase, gradient: gradient, noise: SplitMix64(seed: rng.next()))
            report(
                .step(
                    step: step, finalLoss: Double(m.finalLoss), promptNLL: Double(m.promptNLL),
                    paraphraseNLL: Double(m.paraphraseNLL ?? .nan), divergence: Double(m.divergence)))
            if step % settings.batch == 0 {
                for i in 0..<gradient.count { gradient.pointer[i] /= Float(settings.batch) }
                NormClipping.clampNorm(gradient, maxNorm: 1)
                adam.step(gradients: [gradient])
                gradient.pointer.update(repeating: 0, count: gradient.count)
            }
            if step % settings.validateEvery == 0 || step == settings.steps { try check(step) }
        }
    }
}
