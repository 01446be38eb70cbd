import Foundation
import ModelFormats
import Models
import TensorCore

/// A trained gradient hypernetwork editor, MEND or IBKE (IBKE.md §3–5): it reads the
/// per-token gradient signal of the edited matrices, passes each token's normalised pair
/// through the network of the matrix's shape, and sums the outputs' outer products, scaled by a
/// learned per-matrix step size, into the update `ΔW_m = −η_m Σ_t δ̃_t ũ_tᵀ` (rank ≤ tokens).
///
/// The same object is what ``Training`` optimises: ``encode(_:updatingStatistics:)``,
/// ``run(_:noise:)``, ``denseUpdates(_:)`` and ``backward(_:updateGradients:klScale:into:stepSizeGradient:)``
/// are the training step's pieces, and ``edit(_:in:)`` strings them together with `z = μ`.
public final class HypernetworkEditor: Editor, @unchecked Sendable {
    /// The matrices of one shape and the network they share.
    struct Shape {
        let inWidth: Int
        let outWidth: Int
        let network: ShapeNetwork
        var inputStatistics: FeatureNormalizer
        var gradientStatistics: FeatureNormalizer
    }

    /// `ibke` or `mend`.
    public let name: String
    public let settings: HypernetworkSettings
    /// The content hash of the model the editor was made for (``LanguageModel/contentHash()``).
    public let modelHash: String
    /// The edited matrices, in the order of ``stepSizes``.
    public let modules: [ParameterID]
    /// `η_m`, one per module.
    public let stepSizes: Tensor
    /// Training provenance (data, steps, seed, git revision), saved with the editor.
    public var provenance: [String: String] = [:]
    var shapes: [Shape]
    /// Per module: its shape's index, and its FiLM row in that shape's network.
    let placement: [(shape: Int, slot: Int)]

    public var hyperparameters: JSONValue { settings.json }

    /// A freshly initialised editor for `model` (training starts here).
    public convenience init(name: String, settings: HypernetworkSettings, model: LanguageModel) throws {
        try self.init(name: name, settings: settings, model: model, initialize: true)
    }

    private init(name: String, settings: HypernetworkSettings, model: LanguageModel, initialize: Bool) throws {
        self.name = name
        self.settings = settings
        modelHash = try model.contentHash()
        modules = settings.modules
        var shapes: [Shape] = [], placement: [(Int, Int)] = []
        var shapeKeys: [[Int]] = [], counts: [Int] = []
        for id in modules {
            guard let w = model.transformer.weights.tensor(id, config: model.config) else {
                throw EditorError.invalidHyperparameter(file: name, key: "matrices", expected: "matrices this model has (no \(id))")
            }
            if let s = shapeKeys.firstIndex(of: w.shape) {
                placement.append((s, counts[s]))
                counts[s] += 1
            } else {
                shapeKeys.append(w.shape)
                counts.append(1)
                placement.append((shapeKeys.count - 1, 0))
            }
        }
        var rng = SplitMix64(seed: settings.seed)
        for (key, count) in zip(shapeKeys, counts) {
            let (out, inp) = (key[0], key[1])
            let network = initialize
                ? ShapeNetwork(design: settings.design, inWidth: inp, outWidth: out, rank: settings.rank,
                               latentSize: settings.latentSize, modules: count,
                               initialLogVariance: Float(settings.initialLogVariance), rng: &rng)
                : ShapeNetwork(design: settings.design, inWidth: inp, outWidth: out, rank: settings.rank,
                               latentSize: settings.latentSize, modules: count)
            shapes.append(Shape(inWidth: inp, outWidth: out, network: network,
                                inputStatistics: FeatureNormalizer(width: inp), gradientStatistics: FeatureNormalizer(width: out)))
        }
        self.shapes = shapes
        self.placement = placement
        stepSizes = Tensor(shape: [modules.count], values: Array(repeating: Float(settings.initialStepSize), count: modules.count))
    }

    /// The parameter banks of the shape networks (what the optimiser updates, besides ``stepSizes``).
    public var parameterBanks: [ParameterBank] { shapes.map(\.network.bank) }

    /// The number of trainable floats.
    public var parameterCount: Int { shapes.reduce(stepSizes.count) { $0 + $1.network.bank.count } }

    // MARK: The pieces of an edit

    /// Each module's normalised rows `[ū; δ̄]` (`[T, in + out]`), updating the running
    /// statistics first when training (MEND updates them on every training row).
    public func encode(_ signal: GradientSignal, updatingStatistics: Bool) -> [Tensor] {
        modules.enumerated().map { i, id in
            let pair = signal.pairs[id]!, s = placement[i].shape
            let rows = pair.input.shape[0], inW = shapes[s].inWidth, outW = shapes[s].outWidth
            if updatingStatistics {
                shapes[s].inputStatistics.update(pair.input.pointer, rows: rows, ld: inW)
                shapes[s].gradientStatistics.update(pair.outputGradient.pointer, rows: rows, ld: outW)
            }
            let x = Tensor(zeros: [rows, inW + outW])
            shapes[s].inputStatistics.normalize(pair.input.pointer, rows: rows, ld: inW, into: x.pointer, ldy: inW + outW)
            shapes[s].gradientStatistics.normalize(pair.outputGradient.pointer, rows: rows, ld: outW,
                                                   into: x.pointer + inW, ldy: inW + outW)
            return x
        }
    }

    /// The network outputs of every module.
    public struct Pass {
        let shapes: [ShapeNetwork.Pass]
        let placement: [(shape: Int, slot: Int)]
        /// Σ of the latent KL over every latent vector (0 for MEND).
        public var klSum: Double { shapes.reduce(0) { $0 + $1.klSum } }
        /// The latent vectors the KL sums over (the mean-per-latent ITM reduction divides by
        /// this): every row for the bottleneck, one per shape for the gated design, 0 for MEND.
        public var latentCount: Int { shapes.reduce(0) { $0 + $1.latentCount } }

        /// Module `i`'s factors `[ũ; δ̃]`, `[T, in + out]`.
        func output(_ i: Int) -> Tensor { shapes[placement[i].shape].outputs[placement[i].slot]! }
    }

    /// Runs every module's rows through its shape's network; `noise` samples the latent (training).
    public func run(_ inputs: [Tensor], noise: UnsafeMutablePointer<SplitMix64>? = nil) -> Pass {
        precondition(inputs.count == modules.count, "one input per module")
        let passes = shapes.enumerated().map { k, shape in
            var slots = [Tensor?](repeating: nil, count: shape.network.moduleCount)
            for (i, place) in placement.enumerated() where place.shape == k { slots[place.slot] = inputs[i] }
            return shape.network.forward(slots, noise: noise)
        }
        return Pass(shapes: passes, placement: placement)
    }

    /// Module `i`'s update as factors: `left = −η δ̃ᵀ` `[out, T]`, `right = ũ` `[T, in]`.
    public func factors(_ pass: Pass, module i: Int) -> (left: Tensor, right: Tensor) {
        let s = shapes[placement[i].shape], y = pass.output(i), rows = y.shape[0], d = s.inWidth + s.outWidth
        let left = Tensor(zeros: [s.outWidth, rows]), right = Tensor(zeros: [rows, s.inWidth])
        let eta = -stepSizes[i]
        for t in 0..<rows {
            let row = y.pointer + t * d
            (right.pointer + t * s.inWidth).update(from: row, count: s.inWidth)
            for o in 0..<s.outWidth { left.pointer[o * rows + t] = eta * row[s.inWidth + o] }
        }
        return (left, right)
    }

    /// Every module's `ΔW` as a dense matrix.
    public func denseUpdates(_ pass: Pass) -> [Tensor] {
        modules.indices.map { i in
            let s = shapes[placement[i].shape], y = pass.output(i), rows = y.shape[0], d = s.inWidth + s.outWidth
            let dw = Tensor(zeros: [s.outWidth, s.inWidth])
            MatMul.gemm(transA: true, m: s.outWidth, n: s.inWidth, k: rows, alpha: -stepSizes[i],
                        a: y.pointer + s.inWidth, lda: d, b: y.pointer, ldb: d, c: dw.pointer, ldc: s.inWidth)
            return dw
        }
    }

    /// Adds the gradient of a loss to the networks' gradients (one per ``parameterBanks``
    /// entry) and to `stepSizeGradient`, from the loss's gradient `G_m = ∂L/∂ΔW_m` of each
    /// module's update (the edited model's ordinary weight gradient: IBKE.md §4.2 step 6), plus
    /// `klScale` times the gradient of ``Pass/klSum`` (β / ``Pass/latentCount`` for the ITM term).
    public func backward(
        _ pass: Pass, updateGradients: [Tensor], klScale: Float, into gradients: [Tensor], stepSizeGradient: Tensor
    ) {
        precondition(updateGradients.count == modules.count && gradients.count == shapes.count, "one gradient per module and shape")
        var outputGradients = shapes.map { [Tensor?](repeating: nil, count: $0.network.moduleCount) }
        for i in modules.indices {
            let s = shapes[placement[i].shape], g = updateGradients[i], y = pass.output(i)
            let rows = y.shape[0], inW = s.inWidth, outW = s.outWidth, d = inW + outW
            let eta = stepSizes[i]
            // P = Ũ Gᵀ [T, out]; ∂L/∂Δ̃ = −η P; ∂L/∂Ũ = −η Δ̃ G; ∂L/∂η = −Σ Δ̃ ⊙ P.
            let p = Tensor(zeros: [rows, outW])
            MatMul.gemm(transB: true, m: rows, n: outW, k: inW, a: y.pointer, lda: d, b: g.pointer, ldb: inW,
                        c: p.pointer, ldc: outW)
            let dY = Tensor(zeros: [rows, d])
            MatMul.gemm(m: rows, n: inW, k: outW, alpha: -eta, a: y.pointer + inW, lda: d, b: g.pointer, ldb: inW,
                        c: dY.pointer, ldc: d)
            var dEta = 0.0
            for t in 0..<rows {
                let delta = y.pointer + t * d + inW, pt = p.pointer + t * outW, out = dY.pointer + t * d + inW
                for o in 0..<outW {
                    out[o] = -eta * pt[o]
                    dEta -= Double(delta[o] * pt[o])
                }
            }
            stepSizeGradient.pointer[i] += Float(dEta)
            outputGradients[placement[i].shape][placement[i].slot] = dY
        }
        for (k, shape) in shapes.enumerated() {
            shape.network.backward(pass.shapes[k], outputGradients: outputGradients[k], klScale: klScale, into: gradients[k])
        }
    }

    // MARK: Editing

    public func edit(_ requests: [PreparedRequest], in model: LanguageModel) throws -> WeightDelta {
        try checkModel(model, source: name)
        let signal = try GradientSignal.capture(requests, transformer: model.transformer, modules: modules, rows: settings.rows)
        guard signal.loss.isFinite else { throw EditorError.notFinite(method: name, detail: "the edit loss") }
        let pass = run(encode(signal, updatingStatistics: false))
        var delta = WeightDelta(metadata: deltaMetadata(requests, model: model))
        delta.metadata[WeightDelta.modelHashKey] = modelHash
        for (i, id) in modules.enumerated() {
            let (left, right) = factors(pass, module: i)
            guard left.isFinite && right.isFinite else { throw EditorError.notFinite(method: name, detail: "the update of \(id)") }
            delta.entries.append(.init(id, .lowRank(left: left, right: right)))
        }
        return delta
    }

    /// Refuses a model other than the one the editor was trained for.
    public func checkModel(_ model: LanguageModel, source: String) throws {
        let hash = try model.contentHash()
        guard hash == modelHash else {
            throw HypernetworkError.wrongModel(file: source, editorModel: modelHash, model: hash)
        }
    }
}

/// Errors of editor files.
public enum HypernetworkError: Error, CustomStringConvertible, Equatable {
    case wrongModel(file: String, editorModel: String, model: String)
    case malformed(file: String, detail: String)

    public var description: String {
        switch self {
        case .wrongModel(let file, let editorModel, let model):
            "\(file): this editor was trained for the model with SHA-256 \(editorModel.prefix(12))…, not for this one (\(model.prefix(12))…); train an editor for it with `ibke train`"
        case .malformed(let file, let detail):
            "\(file): not a usable IBKE editor file: \(detail)"
        }
    }
}

// MARK: Files

extension HypernetworkEditor {
    static let formatKey = "ibke.format"
    static let formatValue = "ibke-editor-1"

    /// Writes the editor (networks, step sizes, normalisation statistics, settings, model hash,
    /// provenance) as one safetensors file, atomically. `halfPrecision` stores the network
    /// weights in float16 (half the file, for distribution); step sizes and statistics stay exact.
    public func save(to url: URL, halfPrecision: Bool = false) throws {
        var tensors: [SafetensorsWriter.Entry] = [.init(name: "step_sizes", shape: [modules.count], floats: stepSizes.scalars)]
        var counts: [String] = []
        for (k, shape) in shapes.enumerated() {
            let bank = shape.network.bank
            for slot in bank.slots {
                let name = "shape\(k).\(slot.name)", values = bank[slot.name].scalars
                tensors.append(halfPrecision ? .float16(name: name, shape: slot.shape, floats: values)
                                             : .init(name: name, shape: slot.shape, floats: values))
            }
            // In float64, so that a resumed training run continues the statistics exactly.
            for (label, statistics) in [("input", shape.inputStatistics), ("gradient", shape.gradientStatistics)] {
                for (suffix, values) in [("mean", statistics.mean), ("m2", statistics.sumOfSquares)] {
                    let bytes = values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
                    tensors.append(.init(name: "shape\(k).\(label)_\(suffix)", shape: [statistics.width], dtype: .f64, bytes: bytes))
                }
                counts.append(String(statistics.count))
            }
        }
        var metadata = provenance
        metadata[Self.formatKey] = Self.formatValue
        metadata["ibke.method"] = name
        metadata["ibke.settings"] = settings.json.serialized(indent: 0)
        metadata[WeightDelta.modelHashKey] = modelHash
        metadata["ibke.modules"] = modules.map(\.name).joined(separator: ",")
        metadata["ibke.statistics_counts"] = counts.joined(separator: ",")
        try SafetensorsWriter.write(tensors: tensors, metadata: metadata, to: url)
    }

    /// Reads an editor written by ``save(to:)`` for `model`.
    ///
    /// - Throws: ``HypernetworkError/wrongModel(file:editorModel:model:)`` for an editor
    ///   trained for another model, ``HypernetworkError/malformed(file:detail:)`` for a file
    ///   that is not an editor or does not fit its own settings, `SafetensorsError` for a
    ///   damaged file.
    public static func load(from url: URL, for model: LanguageModel) throws -> HypernetworkEditor {
        let file = try SafetensorsFile(url: url)
        let fileName = url.lastPathComponent
        func malformed(_ detail: String) -> HypernetworkError { .malformed(file: fileName, detail: detail) }
        guard file.metadata[formatKey] == formatValue else {
            throw malformed("no \(formatKey) = \(formatValue) in the header")
        }
        guard let editorModel = file.metadata[WeightDelta.modelHashKey] else { throw malformed("no \(WeightDelta.modelHashKey)") }
        let hash = try model.contentHash()
        guard editorModel == hash else { throw HypernetworkError.wrongModel(file: fileName, editorModel: editorModel, model: hash) }
        guard let method = file.metadata["ibke.method"], let settingsText = file.metadata["ibke.settings"],
              let settingsObject = (try? JSONValue.parse(Data(settingsText.utf8)))?.objectValue
        else { throw malformed("no ibke.method or ibke.settings") }
        var reader = HyperparameterReader(object: settingsObject, file: fileName)
        let settings = try HypernetworkSettings(reading: &reader, design: .bottleneck, config: model.config)
        let editor = try HypernetworkEditor(name: method, settings: settings, model: model, initialize: false)
        guard file.metadata["ibke.modules"] == editor.modules.map(\.name).joined(separator: ",") else {
            throw malformed("ibke.modules does not match the settings")
        }
        func read(_ name: String, count: Int) throws -> [Float] {
            guard let shape = file.shape(of: name), shape.reduce(1, *) == count else {
                throw malformed("tensor \(name) is missing or has the wrong size (expected \(count) values)")
            }
            let values = try file.readFloats(name)
            guard values.allSatisfy(\.isFinite) else { throw malformed("tensor \(name) holds NaN or infinite values") }
            return values
        }
        editor.stepSizes.buffer.update(fromContentsOf: try read("step_sizes", count: editor.modules.count))
        let counts = (file.metadata["ibke.statistics_counts"] ?? "").split(separator: ",").compactMap { Int($0) }
        guard counts.count == 2 * editor.shapes.count else { throw malformed("ibke.statistics_counts does not list two counts per shape") }
        for k in editor.shapes.indices {
            let bank = editor.shapes[k].network.bank
            for slot in bank.slots {
                _ = bank[slot.name].buffer.update(fromContentsOf: try read("shape\(k).\(slot.name)", count: slot.count))
            }
            func doubles(_ name: String, count: Int) throws -> [Double] {
                guard let info = file.info(of: name), info.dtype == .f64, info.elementCount == count else {
                    throw malformed("tensor \(name) is missing or not \(count) float64 values")
                }
                let values = try file.withRawBytes(of: name) { raw in
                    (0..<count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
                }
                guard values.allSatisfy(\.isFinite) else { throw malformed("tensor \(name) holds NaN or infinite values") }
                return values
            }
            func statistics(_ label: String, width: Int, count: Int) throws -> FeatureNormalizer {
                FeatureNormalizer(count: count, mean: try doubles("shape\(k).\(label)_mean", count: width),
                                  sumOfSquares: try doubles("shape\(k).\(label)_m2", count: width))
            }
            editor.shapes[k].inputStatistics = try statistics("input", width: editor.shapes[k].inWidth, count: counts[2 * k])
            editor.shapes[k].gradientStatistics = try statistics("gradient", width: editor.shapes[k].outWidth, count: counts[2 * k + 1])
        }
        editor.provenance = file.metadata.filter { $0.key.hasPrefix("ibke.training.") }
        return editor
    }
}
