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
    /// Rewordings of each prompt in the value loss the reads see (`prompt_variants`, as at edit time).
    public var promptVariants = 0
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
        promptVariants = try reader.int("prompt_variants", default: promptVariants, in: 0...16)
        seed = UInt64(try reader.int("seed", default: Int(seed), in: 0...Int.max))
        try reader.finish()
    }

    /// The settings as `--set` keys, recorded in checkpoints (a resumed run must match them).
    public var json: JSONValue {
        var object: JSONObject = [
            "reads": .int(network.reads), "hidden": .int(network.hidden), "latent": .int(network.latent), "steps": .int(steps),
            "batch": .int(batch), "lr": .double(learningRate), "validate_every": .int(validateEvery), "beta": .double(Double(beta)),
            "paraphrase_weight": .double(Double(paraphraseWeight)), "intermediate_weight": .double(Double(intermediateWeight)),
            "seed": .int(Int(seed)),
        ]
        // Written only when set, so checkpoints made before the key still resume.
        if promptVariants > 0 { _ = object.updateValue(.int(promptVariants), forKey: "prompt_variants") }
        return .object(object)
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

    /// Requests trained on so far.
    public private(set) var step = 0
    /// Every validation so far, in order (a resumed run's include the earlier part's).
    public private(set) var validations: [(step: Int, result: Validation)] = []
    private var sampler: SplitMix64
    private var best = -1.0
    /// The gradient summed over the current batch's requests.
    private let gradient: Tensor
    private let adam: Adam

    public init(
        model: LanguageModel, settings: ValueStepTrainingSettings, training: [ValueStepSample], validation: [ValueStepSample]
    ) throws {
        objective = try ValueStepObjective(model: model, promptVariants: settings.promptVariants)
        objective.beta = settings.beta
        objective.paraphraseWeight = settings.paraphraseWeight
        objective.intermediateWeight = settings.intermediateWeight
        network = ValueStepNetwork(settings: settings.network, width: HookPoint.layerOutput.width(model.config), seed: settings.seed)
        self.settings = settings
        self.training = training
        self.validation = validation
        sampler = SplitMix64(seed: settings.seed &+ 1)
        gradient = network.bank.makeGradient()
        adam = Adam(parameters: [network.bank.values], learningRate: settings.learningRate)
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

    /// Trains up to `settings.steps` requests (or to `stopAt`), validating every
    /// `validateEvery` and after the last; `save` receives the network whenever validation
    /// improves, `checkpoint` is called after each validation and when stopping early (the
    /// moments to ``saveCheckpoint(to:)``).
    public func run(
        stopAt: Int? = nil, save: (ValueStepNetwork, Validation) throws -> Void, report: (Event) -> Void,
        checkpoint: () throws -> Void = {}
    ) throws {
        func check() throws {
            let v = try validate()
            validations.append((step, v))
            let improved = v.score > best
            if improved {
                best = v.score
                try save(network, v)
            }
            report(.validation(step: step, v, best: improved))
        }
        if step == 0 && validations.isEmpty { try check() }
        let end = min(settings.steps, stopAt ?? .max)
        while step < end {
            step += 1
            let sample = training[Int(sampler.next() % UInt64(training.count))]
            let m = try objective.run(
                network, request: sample.edit, paraphrase: sample.paraphrase, gradient: gradient,
                noise: SplitMix64(seed: sampler.next()))
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
            if step % settings.validateEvery == 0 || step == settings.steps {
                try check()
                try checkpoint()
            } else if step == end {
                try checkpoint()
            }
        }
    }

    // MARK: Checkpoints

    /// Writes the loop's state to `directory` as one file, atomically (a run killed while
    /// writing keeps the previous checkpoint whole): the network, Adam's moments, the current
    /// batch's gradient, and in its metadata the step, sampler, validations, and the settings and
    /// data sizes a resumed run must match.
    public func saveCheckpoint(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var tensors = [
            SafetensorsWriter.Entry(name: "network", shape: [network.bank.count], floats: network.bank.values.scalars),
            SafetensorsWriter.Entry(name: "gradient", shape: [gradient.count], floats: gradient.scalars),
        ]
        var adamStep = 0
        if let s = adam.state(of: 0) {
            tensors.append(.init(name: "adam.m", shape: [s.firstMoment.count], floats: s.firstMoment))
            tensors.append(.init(name: "adam.v", shape: [s.secondMoment.count], floats: s.secondMoment))
            adamStep = s.step
        }
        let state: JSONObject = [
            "step": .int(step), "adam_step": .int(adamStep), "sampler": .string(String(sampler.currentState)),
            "best": .double(best), "settings": settings.json, "training_records": .int(training.count),
            "validation_records": .int(validation.count),
            "validations": .array(
                validations.map {
                    .array([.int($0.step), .double($0.result.prompt), .double($0.result.paraphrase), .double($0.result.finalLoss)])
                }),
        ]
        try SafetensorsWriter.write(
            tensors: tensors, metadata: [Self.stateKey: JSONValue.object(state).serialized(indent: 0)],
            to: directory.appendingPathComponent(Self.checkpointFile))
    }

    static let checkpointFile = "trainer.safetensors"
    static let stateKey = "ibke.trainer_state"

    /// Restores the state ``saveCheckpoint(to:)`` wrote, refusing one made with other settings
    /// or other numbers of training and validation records.
    public func restore(from directory: URL) throws {
        let url = directory.appendingPathComponent(Self.checkpointFile)
        guard let file = try? SafetensorsFile(url: url), let text = file.metadata[Self.stateKey],
            let state = (try? JSONValue.parse(Data(text.utf8)))?.objectValue, let savedStep = state["step"]?.intValue,
            let adamStep = state["adam_step"]?.intValue, let samplerState = state["sampler"]?.stringValue.flatMap(UInt64.init),
            let savedBest = state["best"]?.doubleValue
        else { throw TrainingError.noCheckpoint(directory.path) }
        guard state["settings"] == settings.json, state["training_records"]?.intValue == training.count,
            state["validation_records"]?.intValue == validation.count
        else { throw TrainingError.settingsChanged(url.path) }
        let values = try file.readFloats("network")
        let accumulated = try file.readFloats("gradient")
        guard values.count == network.bank.count, accumulated.count == gradient.count else {
            throw TrainingError.settingsChanged(url.path)
        }
        network.bank.values.buffer.update(fromContentsOf: values)
        gradient.buffer.update(fromContentsOf: accumulated)
        if adamStep > 0 {
            adam.restoreState(
                of: 0, firstMoment: try file.readFloats("adam.m"), secondMoment: try file.readFloats("adam.v"), step: adamStep)
        }
        step = savedStep
        sampler = SplitMix64(seed: samplerState)
        best = savedBest
        validations = (state["validations"]?.arrayValue ?? []).compactMap { v in
            guard let a = v.arrayValue, a.count == 4, let s = a[0].intValue, let p = a[1].doubleValue, let q = a[2].doubleValue,
                let l = a[3].doubleValue
            else { return nil }
            return (s, Validation(prompt: p, paraphrase: q, finalLoss: l))
        }
    }
}
