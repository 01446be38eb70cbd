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
/// `@unchecked Sendable`: training mutates `settings`, `shapes`, `provenance` and the banks unlocked;
/// one thread at a time uses an editor (the trainer's, or the model's owner when editing).
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
    public private(set) var settings: HypernetworkSettings
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
    /// The key-value write's second moment C = E[kkᵀ] of each edited layer's `ffn_down` input
    /// (`[F, F]`), kept with the editor because training learned through it, and its Cholesky factor.
    public let keyMoments: [Int: Tensor]
    private let keyFactors: [Int: DenseSolve.CholeskyFactor]

    public var hyperparameters: JSONValue { settings.json }

    /// A freshly initialised editor for `model` (training starts here).
    ///
    /// - Parameter keyMoments: the layer's C for the key-value write (``HypernetworkSettings/Write/keyValue``),
    ///   e.g. ``SecondMoments/matrix(layer:)`` of each edited layer; unused otherwise.
    public convenience init(
        name: String, settings: HypernetworkSettings, model: LanguageModel,
        keyMoments: [Int: Tensor] = [:]
    ) throws {
        try self.init(name: name, settings: settings, model: model, keyMoments: keyMoments, initialize: true)
    }

    private init(
        name: String, settings: HypernetworkSettings, model: LanguageModel, keyMoments: [Int: Tensor],
        initialize: Bool
    ) throws {
        self.name = name
        self.settings = settings
        modelHash = try model.contentHash()
        modules = settings.modules
        if settings.write == .keyValue {
            let f = model.config.feedForwardSize
            var factors: [Int: DenseSolve.CholeskyFactor] = [:]
            for layer in settings.layers {
                guard let c = keyMoments[layer], c.shape == [f, f] else {
                    throw EditorError.statisticsMissing(method: name, layers: settings.layers.filter { keyMoments[$0] == nil })
                }
                factors[layer] = try DenseSolve.CholeskyFactor(regularizing: c)
            }
            self.keyMoments = keyMoments.filter { settings.layers.contains($0.key) }
            keyFactors = factors
        } else {
            self.keyMoments = [:]
            keyFactors = [:]
        }
        var shapes: [Shape] = []
        var placement: [(Int, Int)] = []
        var shapeKeys: [[Int]] = []
        var counts: [Int] = []
        for id in modules {
            guard let shape = model.transformer.weights.shape(of: id, config: model.config) else {
                throw EditorError.invalidHyperparameter(file: name, key: "matrices", expected: "matrices this model has (no \(id))")
            }
            if let s = shapeKeys.firstIndex(of: shape) {
                placement.append((s, counts[s]))
                counts[s] += 1
            } else {
                shapeKeys.append(shape)
                counts.append(1)
                placement.append((shapeKeys.count - 1, 0))
            }
        }
        var rng = SplitMix64(seed: settings.seed)
        for (key, count) in zip(shapeKeys, counts) {
            let (out, inp) = (key[0], key[1])
            let network =
                initialize
                ? ShapeNetwork(
                    design: settings.design, inWidth: inp, outWidth: out, rank: settings.rank,
                    latentSize: settings.latentSize, modules: count,
                    initialLogVariance: Float(settings.initialLogVariance), rng: &rng)
                : ShapeNetwork(
                    design: settings.design, inWidth: inp, outWidth: out, rank: settings.rank,
                    latentSize: settings.latentSize, modules: count)
            shapes.append(
                Shape(
                    inWidth: inp, outWidth: out, network: network,
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
            let pair = signal.pairs[id]!
            let s = placement[i].shape
            let rows = pair.input.shape[0]
            let inW = shapes[s].inWidth
            let outW = shapes[s].outWidth
            if updatingStatistics {
                shapes[s].inputStatistics.update(pair.input.pointer, rows: rows, ld: inW)
                shapes[s].gradientStatistics.update(pair.outputGradient.pointer, rows: rows, ld: outW)
            }
            let x = Tensor(zeros: [rows, inW + outW])
            shapes[s].inputStatistics.normalize(pair.input.pointer, rows: rows, ld: inW, into: x.pointer, ldy: inW + outW)
            shapes[s].gradientStatistics.normalize(
                pair.outputGradient.pointer, rows: rows, ld: outW,
                into: x.pointer + inW, ldy: inW + outW)
            return x
        }
    }

    /// The network outputs of every module.
    public struct Pass {
        let shapes: [ShapeNetwork.Pass]
        let placement: [(shape: Int, slot: Int)]
        /// Per module, the update's right factors `[T, in]` when they are not the network's `ũ`
        /// rows: the key-value write's whitened keys, or `ũ` projected off the neighbour span.
        let right: [Tensor]?
        /// The neighbour spans `ũ` was projected off (its gradient is projected the same way).
        let neighbourSpans: [NeighbourSpan]?
        /// Per module, the factor the projected `ũ` was scaled by (``HypernetworkSettings/neighbourRescale``).
        var rightScales: [Float]? = nil
        /// Σ of the latent KL over every latent vector (0 for MEND).
        public var klSum: Double { shapes.reduce(0) { $0 + $1.klSum } }
        /// The latent vectors the KL sums over (the mean-per-latent ITM reduction divides by
        /// this): every row for the bottleneck, one per shape for the gated design, 0 for MEND.
        public var latentCount: Int { shapes.reduce(0) { $0 + $1.latentCount } }

        /// Module `i`'s factors `[ũ; δ̃]`, `[T, in + out]`.
        func output(_ i: Int) -> Tensor { shapes[placement[i].shape].outputs[placement[i].slot]! }
    }

    /// Runs every module's rows through its shape's network; `noise` samples the latent (training).
    /// The key-value write also needs the raw keys of `signal` (the rows' inputs); with
    /// `neighbours` (``neighbourSpans(_:model:)``) the input factors are projected off their spans.
    public func run(
        _ inputs: [Tensor], signal: GradientSignal? = nil, neighbours: [NeighbourSpan]? = nil,
        noise: UnsafeMutablePointer<SplitMix64>? = nil
    ) throws -> Pass {
        precondition(inputs.count == modules.count, "one input per module")
        let passes = shapes.enumerated().map { k, shape in
            var slots = [Tensor?](repeating: nil, count: shape.network.moduleCount)
            for (i, place) in placement.enumerated() where place.shape == k { slots[place.slot] = inputs[i] }
            return shape.network.forward(slots, noise: noise)
        }
        guard settings.write == .keyValue else {
            guard let neighbours else { return Pass(shapes: passes, placement: placement, right: nil, neighbourSpans: nil) }
            var scales: [Float] = []
            let projected = modules.indices.map { i in
                let s = shapes[placement[i].shape]
                let y = passes[placement[i].shape].outputs[placement[i].slot]!
                let rows = y.shape[0]
                let d = s.inWidth + s.outWidth
                let u = Tensor(zeros: [rows, s.inWidth])
                for t in 0..<rows { (u.pointer + t * s.inWidth).update(from: y.pointer + t * d, count: s.inWidth) }
                let before = MatMul.dot(u.pointer, u.pointer, u.count)
                neighbours[i].project(u.pointer, count: rows, stride: s.inWidth)
                let after = MatMul.dot(u.pointer, u.pointer, u.count)
                let scale = after > 0 ? Float(min(settings.neighbourRescale, Double((before / after).squareRoot()))) : 1
                if scale != 1 { for j in 0..<u.count { u.pointer[j] *= scale } }
                scales.append(scale)
                return u
            }
            var pass = Pass(shapes: passes, placement: placement, right: projected, neighbourSpans: neighbours)
            pass.rightScales = scales
            return pass
        }
        guard let signal else { preconditionFailure("the key-value write needs the gradient signal's keys") }
        let keys = try modules.map { id in
            let k = signal.pairs[id]!.input
            let rows = k.shape[0]
            return try MEMIT.writeKeys(
                k.scalars.map(Double.init), count: rows, factor: keyFactors[id.layer]!,
                lambda: settings.keyWeight)
        }
        return Pass(shapes: passes, placement: placement, right: keys, neighbourSpans: nil)
    }

    /// Module `i`'s right factor: `ũ` (the gradient write), projected when there are
    /// neighbours, or the whitened keys (the key-value write), as a pointer to `[T, in]` rows
    /// with their stride.
    private func rightFactor(_ pass: Pass, module i: Int) -> (pointer: UnsafeMutablePointer<Float>, stride: Int) {
        if let right = pass.right { return (right[i].pointer, shapes[placement[i].shape].inWidth) }
        let s = shapes[placement[i].shape]
        return (pass.output(i).pointer, s.inWidth + s.outWidth)
    }

    /// Module `i`'s update as factors: `left = −η δ̃ᵀ` `[out, T]`, `right` `[T, in]` (``rightFactor(_:module:)``).
    public func factors(_ pass: Pass, module i: Int) -> (left: Tensor, right: Tensor) {
        let s = shapes[placement[i].shape]
        let y = pass.output(i)
        let rows = y.shape[0]
        let d = s.inWidth + s.outWidth
        let left = Tensor(zeros: [s.outWidth, rows])
        let right = Tensor(zeros: [rows, s.inWidth])
        let eta = -stepSizes[i]
        let source = rightFactor(pass, module: i)
        for t in 0..<rows {
            (right.pointer + t * s.inWidth).update(from: source.pointer + t * source.stride, count: s.inWidth)
            for o in 0..<s.outWidth { left.pointer[o * rows + t] = eta * y.pointer[t * d + s.inWidth + o] }
        }
        return (left, right)
    }

    /// Every module's `ΔW` as a dense matrix.
    public func denseUpdates(_ pass: Pass) -> [Tensor] {
        modules.indices.map { i in
            let s = shapes[placement[i].shape]
            let y = pass.output(i)
            let rows = y.shape[0]
            let d = s.inWidth + s.outWidth
            let dw = Tensor(zeros: [s.outWidth, s.inWidth])
            let right = rightFactor(pass, module: i)
            MatMul.gemm(
                transA: true, m: s.outWidth, n: s.inWidth, k: rows, alpha: -stepSizes[i],
                a: y.pointer + s.inWidth, lda: d, b: right.pointer, ldb: right.stride, c: dw.pointer, ldc: s.inWidth)
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
            let s = shapes[placement[i].shape]
            let g = updateGradients[i]
            let y = pass.output(i)
            let rows = y.shape[0]
            let inW = s.inWidth
            let outW = s.outWidth
            let d = inW + outW
            let eta = stepSizes[i]
            let right = rightFactor(pass, module: i)
            // P = Ũ Gᵀ [T, out]; ∂L/∂Δ̃ = −η P; ∂L/∂Ũ = −η Δ̃ G; ∂L/∂η = −Σ Δ̃ ⊙ P. The key-value
            // write's right factor is not the network's: its ∂L/∂Ũ stays zero.
            let p = Tensor(zeros: [rows, outW])
            MatMul.gemm(
                transB: true, m: rows, n: outW, k: inW, a: right.pointer, lda: right.stride, b: g.pointer, ldb: inW,
                c: p.pointer, ldc: outW)
            let dY = Tensor(zeros: [rows, d])
            if settings.write == .gradient {
                MatMul.gemm(
                    m: rows, n: inW, k: outW, alpha: -eta, a: y.pointer + inW, lda: d, b: g.pointer, ldb: inW,
                    c: dY.pointer, ldc: d)
                // The projection is symmetric: the gradient of the raw ũ is the projected one's, projected.
                pass.neighbourSpans?[i].project(dY.pointer, count: rows, stride: d)
                if let scale = pass.rightScales?[i], scale != 1 {
                    for t in 0..<rows { for j in 0..<inW { dY.pointer[t * d + j] *= scale } }
                }
            }
            var dEta = 0.0
            for t in 0..<rows {
                let delta = y.pointer + t * d + inW
                let pt = p.pointer + t * outW
                let out = dY.pointer + t * d + inW
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
        // Each iteration's factors, per module; later iterations read the model with the earlier ones.
        var lefts = [[Tensor]](repeating: [], count: modules.count)
        var rights = lefts
        let neighbours = try neighbourSpans(requests, model: model)
        _ = try model.transformer.inTurn(settings.iterations, source: name) { _ in
            let signal = try GradientSignal.capture(requests, transformer: model.transformer, modules: modules, rows: settings.rows)
            guard signal.loss.isFinite else { throw EditorError.notFinite(method: name, detail: "the edit loss") }
            let pass = try run(encode(signal, updatingStatistics: false), signal: signal, neighbours: neighbours)
            var step = WeightDelta()
            for (i, id) in modules.enumerated() {
                let (left, right) = factors(pass, module: i)
                guard left.isFinite && right.isFinite else { throw EditorError.notFinite(method: name, detail: "the update of \(id)") }
                lefts[i].append(left)
                rights[i].append(right)
                step.entries.append(.init(id, .lowRank(left: left, right: right)))
            }
            return step
        }
        var delta = WeightDelta(metadata: deltaMetadata(requests, model: model))
        delta.metadata[WeightDelta.modelHashKey] = modelHash
        for (i, id) in modules.enumerated() {
            delta.entries.append(.init(id, .lowRank(left: Self.columns(lefts[i]), right: Self.rows(rights[i]))))
        }
        return delta
    }

    /// `[out, T₁]`, `[out, T₂]`, … side by side: `[out, ΣT]`.
    private static func columns(_ parts: [Tensor]) -> Tensor {
        guard parts.count > 1 else { return parts[0] }
        let out = parts[0].shape[0]
        let total = parts.reduce(0) { $0 + $1.shape[1] }
        let joined = Tensor(zeros: [out, total])
        var start = 0
        for part in parts {
            let t = part.shape[1]
            for o in 0..<out { (joined.pointer + o * total + start).update(from: part.pointer + o * t, count: t) }
            start += t
        }
        return joined
    }

    /// `[T₁, in]`, `[T₂, in]`, … stacked: `[ΣT, in]`.
    private static func rows(_ parts: [Tensor]) -> Tensor {
        guard parts.count > 1 else { return parts[0] }
        return Tensor(shape: [parts.reduce(0) { $0 + $1.shape[0] }, parts[0].shape[1]], values: parts.flatMap(\.scalars))
    }

    /// The spans of every module's inputs on the requests' counterfactual neighbours
    /// (``HypernetworkSettings/neighbours``), nil when the editor uses none.
    public func neighbourSpans(_ requests: [PreparedRequest], model: LanguageModel) throws -> [NeighbourSpan]? {
        try NeighbourSpan.spans(requests, modules: modules, settings: settings, model: model)
    }

    /// Applies the settings that change how an edit is made but not the trained networks
    /// (`neighbours`, `neighbour_subjects`, `neighbour_rescale`), read from a hyperparameter file; any other key is an error.
    public func overrideEditSettings(_ reader: inout HyperparameterReader) throws {
        var changed = settings
        changed.neighbours = try reader.int("neighbours", default: settings.neighbours)
        changed.neighbourSubjects = try reader.strings("neighbour_subjects", default: settings.neighbourSubjects)
        changed.neighbourRescale = try reader.double("neighbour_rescale", default: settings.neighbourRescale)
        try reader.finish()
        try changed.checkNeighbours(file: reader.file)
        settings = changed
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
                let name = "shape\(k).\(slot.name)"
                let values = bank[slot.name].scalars
                tensors.append(
                    halfPrecision
                        ? .float16(name: name, shape: slot.shape, floats: values)
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
        for (layer, c) in keyMoments.sorted(by: { $0.key < $1.key }) {
            // C's lower triangle over its mean diagonal (so that float16 keeps 3 digits of its
            // small off-diagonal entries), and that scale.
            let n = c.shape[0]
            let scale = (0..<n).reduce(Float(0)) { $0 + c.pointer[$1 * n + $1] } / Float(n)
            let name = "key_moment.layer\(layer)"
            let packed = Self.lowerTriangle(c).map { $0 / scale }
            tensors.append(
                halfPrecision
                    ? .float16(name: name, shape: [packed.count], floats: packed)
                    : .init(name: name, shape: [packed.count], floats: packed))
            tensors.append(.init(name: name + ".scale", shape: [1], floats: [scale]))
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
        func read(_ name: String, count: Int) throws -> [Float] {
            guard let shape = file.shape(of: name), shape.reduce(1, *) == count else {
                throw malformed("tensor \(name) is missing or has the wrong size (expected \(count) values)")
            }
            let values = try file.readFloats(name)
            guard values.allSatisfy(\.isFinite) else { throw malformed("tensor \(name) holds NaN or infinite values") }
            return values
        }
        var keyMoments: [Int: Tensor] = [:]
        if settings.write == .keyValue {
            let f = model.config.feedForwardSize
            for layer in settings.layers {
                let name = "key_moment.layer\(layer)"
                let scale = try read(name + ".scale", count: 1)[0]
                keyMoments[layer] = unpackLowerTriangle(try read(name, count: f * (f + 1) / 2).map { $0 * scale }, order: f)
            }
        }
        let editor = try HypernetworkEditor(
            name: method, settings: settings, model: model, keyMoments: keyMoments,
            initialize: false)
        guard file.metadata["ibke.modules"] == editor.modules.map(\.name).joined(separator: ",") else {
            throw malformed("ibke.modules does not match the settings")
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
                FeatureNormalizer(
                    count: count, mean: try doubles("shape\(k).\(label)_mean", count: width),
                    sumOfSquares: try doubles("shape\(k).\(label)_m2", count: width))
            }
            editor.shapes[k].inputStatistics = try statistics("input", width: editor.shapes[k].inWidth, count: counts[2 * k])
            editor.shapes[k].gradientStatistics = try statistics("gradient", width: editor.shapes[k].outWidth, count: counts[2 * k + 1])
        }
        editor.provenance = file.metadata.filter { $0.key.hasPrefix("ibke.training.") }
        return editor
    }

    /// A symmetric `[n, n]` matrix's lower triangle, row by row (half the file of the full matrix).
    static func lowerTriangle(_ c: Tensor) -> [Float] {
        let n = c.shape[0]
        return (0..<n).flatMap { i in Array(UnsafeBufferPointer(start: c.pointer + i * n, count: i + 1)) }
    }

    static func unpackLowerTriangle(_ packed: [Float], order n: Int) -> Tensor {
        let c = Tensor(zeros: [n, n])
        var k = 0
        for i in 0..<n {
            for j in 0...i {
                c.pointer[i * n + j] = packed[k]
                c.pointer[j * n + i] = packed[k]
                k += 1
            }
        }
        return c
    }
}
