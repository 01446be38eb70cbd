import Foundation
import ModelFormats
import Models
import TensorCore

/// Constrained fine-tuning of MLP matrices: FT-L (`kmeng01/rome` baselines/ft; EasyEdit
/// `objective_optimization: prompt_last`) and FT-M (EasyEdit `target_new`). METHODS.md §1.
///
/// The optimised parameter is `ΔW` itself (the weights are never written): every step runs
/// the edited layers with `W + ΔW` as a weight-delta intervention, from the residual stream
/// entering the lowest edited layer, computed once.
public final class FineTuning: Editor {
    public enum Objective: String, Sendable {
        /// FT-L: every target token scored against the next-token distribution after the
        /// prompt's last token (not teacher forcing: the reference behaviour).
        case promptLast = "prompt_last"
        /// FT-M: teacher-forced cross-entropy over the target tokens of prompt + target.
        case targetNew = "target_new"
    }

    public struct Hyperparameters: Sendable, Equatable {
        public var layers: [Int]
        public var module: ParameterID.Kind = .feedForwardDown
        public var objective: Objective
        public var steps = 25
        public var learningRate = 5e-4
        public var weightDecay = 0.0
        /// L∞ bound on each weight's change (`norm_constraint`); nil for none.
        public var normConstraint: Double?
        public var batchSize = 1
        /// Stop once the epoch's mean loss is below this (the references' 1e-2).
        public var stopLoss = 1e-2

        /// Defaults for a model of `layerCount` blocks: METHODS.md's SmolLM2 values, layer 20
        /// of 30, i.e. two thirds of the depth (rounded) for other models.
        public static func defaults(_ objective: Objective, layerCount: Int) -> Hyperparameters {
            let layer = min(layerCount - 1, Int((Double(layerCount) * 2 / 3).rounded()))
            return Hyperparameters(
                layers: [layer], objective: objective,
                normConstraint: objective == .promptLast ? 5e-4 : nil)
        }

        /// Reads a JSON/YAML object (reference key names accepted) over the defaults.
        public init(
            reading reader: inout HyperparameterReader, objective defaultObjective: Objective,
            layerCount: Int
        ) throws {
            let objectiveName = try reader.string("objective_optimization", "objective", default: defaultObjective.rawValue)
            guard let objective = Objective(rawValue: objectiveName) else {
                throw EditorError.invalidHyperparameter(
                    file: reader.file, key: "objective_optimization",
                    expected: "prompt_last or target_new, found \(objectiveName)")
            }
            self = .defaults(objective, layerCount: layerCount)
            layers = try reader.ints("layers", default: layers)
            try reader.checkLayers(layers, layerCount: layerCount)
            try reader.checkDistinct(layers)
            let moduleName = try reader.string("module", "rewrite_module_tmp", default: module.rawValue)
            guard let kind = Self.moduleKind(moduleName) else {
                throw EditorError.invalidHyperparameter(
                    file: reader.file, key: "module",
                    expected: "an MLP or attention matrix (ffn_down, mlp.down_proj, …), found \(moduleName)")
            }
            module = kind
            steps = try reader.int("num_steps", "steps", default: steps, in: 1...1000)
            learningRate = try reader.double("lr", "learning_rate", default: learningRate)
            weightDecay = try reader.double("weight_decay", default: weightDecay)
            normConstraint = try reader.optionalDouble("norm_constraint", default: normConstraint)
            batchSize = try reader.int("batch_size", default: batchSize, in: 1...1024)
            stopLoss = try reader.double("stop_loss", default: stopLoss)
            reader.ignoreReferenceKeys(["max_length", "kl_factor", "bf16", "hparams_dir"])
            try reader.finish()
            guard steps >= 1, learningRate > 0, batchSize >= 1, weightDecay >= 0 else {
                throw EditorError.invalidHyperparameter(
                    file: reader.file, key: "num_steps/lr/batch_size",
                    expected: "num_steps ≥ 1, lr > 0, batch_size ≥ 1, weight_decay ≥ 0")
            }
            if let normConstraint, normConstraint <= 0 {
                throw EditorError.invalidHyperparameter(file: reader.file, key: "norm_constraint", expected: "a positive number")
            }
        }

        init(layers: [Int], objective: Objective, normConstraint: Double?) {
            self.layers = layers
            self.objective = objective
            self.normConstraint = normConstraint
        }

        /// A module named as in IBKE (`ffn_down`) or in a reference template
        /// (`model.layers.{}.mlp.down_proj`, `transformer.h.{}.mlp.c_proj`).
        static func moduleKind(_ name: String) -> ParameterID.Kind? {
            if let kind = ParameterID.Kind(rawValue: name) { return kind }
            let last = name.split(separator: ".").last.map(String.init) ?? name
            switch last {
            case "down_proj": return .feedForwardDown
            case "c_proj" where name.contains("mlp"): return .feedForwardDown
            case "up_proj", "c_fc": return .feedForwardUp
            case "gate_proj": return .feedForwardGate
            case "o_proj": return .attentionOutput
            case "q_proj": return .attentionQuery
            case "k_proj": return .attentionKey
            case "v_proj": return .attentionValue
            default: return nil
            }
        }

        public var json: JSONValue {
            var object: JSONObject = [
                "layers": .array(layers.map { .int($0) }),
                "module": .string(module.rawValue),
                "objective_optimization": .string(objective.rawValue),
                "num_steps": .int(steps),
                "lr": .double(learningRate),
                "weight_decay": .double(weightDecay),
                "batch_size": .int(batchSize),
                "stop_loss": .double(stopLoss),
            ]
            object.updateValue(normConstraint.map { .double($0) } ?? .null, forKey: "norm_constraint")
            return .object(object)
        }
    }

    public let name: String
    public let settings: Hyperparameters
    public var hyperparameters: JSONValue { settings.json }

    public init(name: String, hyperparameters: Hyperparameters) {
        self.name = name
        self.settings = hyperparameters
    }

    /// FT-L or FT-M with the defaults for `config`, or read from a hyperparameter file.
    public static func make(_ objective: Objective, config: TransformerConfig, file: URL? = nil) throws -> FineTuning {
        let name = objective == .promptLast ? "ft-l" : "ft-m"
        guard let file else {
            return FineTuning(name: name, hyperparameters: .defaults(objective, layerCount: config.layerCount))
        }
        var reader = try HyperparameterReader(contentsOf: file)
        return FineTuning(
            name: name,
            hyperparameters: try Hyperparameters(
                reading: &reader, objective: objective,
                layerCount: config.layerCount))
    }

    public func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
        let transformer = model.transformer
        let config = model.config
        let h = settings
        let ids = h.layers.map { ParameterID(layer: $0, h.module) }
        // The edited matrices' values (copies: a quantized matrix stays quantized).
        let originals = try ids.map { id -> Tensor in
            guard let (matrix, rows) = transformer.weights.matrix(id, config: config) else {
                throw EditorError.invalidHyperparameter(file: name, key: "module", expected: "a matrix this model has (\(id))")
            }
            return Tensor(shape: [rows.count, matrix.columns], values: matrix.copyRows(rows))
        }
        let deltas = originals.map { Tensor(zeros: $0.shape) }
        let optimizer = Adam(parameters: deltas, learningRate: h.learningRate)
        let lowest = h.layers.min()!
        let v = config.vocabularySize

        // Per chunk: the input sequences, the positions the loss reads, their targets and weights.
        struct Chunk {
            var sequences: [[Int]] = []
            var positions: [[Int]] = []
            var targets: [Int] = []
            var weights: [Float] = []
            var prefix: Prefix?
        }
        var chunks: [Chunk] = []
        for start in stride(from: 0, to: requests.count, by: h.batchSize) {
            let batch = requests[start..<min(requests.count, start + h.batchSize)]
            var chunk = Chunk()
            for r in batch {
                let w = 1 / Float(batch.count * r.target.count)
                switch h.objective {
                case .promptLast:
                    chunk.sequences.append(r.prompt)
                    chunk.positions.append(Array(repeating: r.prompt.count - 1, count: r.target.count))
                case .targetNew:
                    chunk.sequences.append(r.prompt + r.target.dropLast())
                    chunk.positions.append(Array((r.prompt.count - 1)..<(r.prompt.count + r.target.count - 1)))
                }
                chunk.targets += r.target
                chunk.weights += Array(repeating: w, count: r.target.count)
            }
            chunk.prefix = lowest > 0 ? try transformer.prefix(chunk.sequences, layers: lowest) : nil
            chunks.append(chunk)
        }

        for _ in 0..<h.steps {
            var epochLoss = 0.0
            for chunk in chunks {
                let interventions = zip(ids, deltas).map { Intervention.weightDelta($0, $1) }
                let tape =
                    try chunk.prefix.map {
                        try transformer.record($0, interventions: interventions, logits: .positions(chunk.positions))
                    } ?? transformer.record(chunk.sequences, interventions: interventions, logits: .positions(chunk.positions))
                let rows = chunk.targets.count
                let dLogits = Tensor(zeros: [rows, v])
                let loss = chunk.targets.withUnsafeBufferPointer { targets in
                    chunk.weights.withUnsafeBufferPointer { weights in
                        Losses.crossEntropy(
                            logits: tape.logits.pointer, rows: rows, vocabularySize: v, ldLogits: v,
                            targets: targets.baseAddress!, weights: weights.baseAddress!,
                            dLogits: dLogits.pointer, ldDLogits: v)
                    }
                }
                guard loss.isFinite else { throw EditorError.notFinite(method: name, detail: "the loss") }
                epochLoss += Double(loss)
                if Double(loss) >= h.stopLoss {
                    let gradients = tape.backward(dLogits: dLogits)
                    let grads = Array(gradients.interventions.prefix(ids.count))
                    if h.weightDecay > 0 {
                        // Adam's L2 decay acts on W = W₀ + ΔW, as the reference's does.
                        for (i, g) in grads.enumerated() {
                            guard let g else { continue }
                            Kernels.addScaled(originals[i].pointer, Float(h.weightDecay), into: g.pointer, count: g.count)
                            Kernels.addScaled(deltas[i].pointer, Float(h.weightDecay), into: g.pointer, count: g.count)
                        }
                    }
                    optimizer.step(gradients: grads)
                }
                if let bound = h.normConstraint {
                    let b = Float(bound)
                    for delta in deltas {
                        for i in 0..<delta.count { delta.pointer[i] = min(b, max(-b, delta.pointer[i])) }
                    }
                }
            }
            if epochLoss / Double(chunks.count) < h.stopLoss { break }
        }

        var delta = WeightDelta(metadata: deltaMetadata(requests, model: model))
        for (id, d) in zip(ids, deltas) {
            guard d.isFinite else { throw EditorError.notFinite(method: name, detail: "the update of \(id)") }
            delta.entries.append(.init(id, .dense(d)))
        }
        return delta
    }
}
