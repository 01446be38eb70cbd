import Foundation
import ModelFormats
import Models

/// The architecture of a gradient hypernetwork editor (MEND, IBKE): which matrices it edits
/// and the sizes of its networks. Stored in every editor file; the training settings are
/// separate (they do not change how an edit is computed).
public struct HypernetworkSettings: Sendable, Equatable {
    public enum Design: String, Sendable, CaseIterable {
        /// MEND: identity-initialised residual low-rank MLP, no latent (METHODS.md §5).
        case mend
        /// IBKE Design A: per-token Gaussian latent, decoder from the latent only (IBKE.md §3).
        case bottleneck
        /// IBKE Design C: one latent per edit and shape gating the normalised gradient (IBKE.md §3.8).
        case gated
        /// This project's extension: Design C's pooled latent gating MEND's per-token output
        /// instead of the raw gradient (Docs/ibke.md).
        case gatedMEND = "gated_mend"
    }

    /// Which token rows of the gradient signal the editor reads (IBKE.md §3.2 step 4).
    public enum RowSelection: String, Sendable, CaseIterable {
        /// Every row whose input and output gradient are not all zero (MEND).
        case allNonzero = "all_nonzero"
        /// Only the rows where the edit loss reads a target token (MALMEN's answer tokens).
        case targetOnly = "target_only"
        /// Only the subject's last token (ROME's key position): one row per request.
        case subjectLast = "subject_last"
    }

    /// How the network's output becomes a weight update.
    public enum Write: String, Sendable, CaseIterable {
        /// MEND's rank-T update `ΔW = −η Σ_t δ̃_t ũ_tᵀ` over the selected rows.
        case gradient
        /// A key-value write at the subject (this project's IBKE, Docs/ibke.md): the network's
        /// `δ̃` of the subject's last token is the value shift, and the input factor is the
        /// covariance-whitened key in closed form, MEMIT's `ΔW = R Kᵀ(λC + KKᵀ)⁻¹` with
        /// `R = −η δ̃`. Inputs the preserved keys span are left nearly alone.
        case keyValue = "key_value"
    }

    public var design: Design
    /// Blocks whose matrices are edited.
    public var layers: [Int]
    /// The matrices of each block that are edited.
    public var matrices: [ParameterID.Kind]
    /// Hidden width `r` of each shape's network.
    public var rank: Int
    /// Latent size `d_z` (bottleneck and gated).
    public var latentSize: Int
    /// Initial learned step size `η` of every matrix (MEND's `edit_lr`).
    public var initialStepSize: Double
    /// Initial log-variance of the latent (bottleneck): `logvar.bias`.
    public var initialLogVariance: Double
    public var rows: RowSelection
    public var write: Write
    /// MEMIT's λ for the key-value write: the weight of the preserved keys' second moment.
    public var keyWeight: Double
    /// How many times an edit reads the gradient signal and writes: each pass reads it on the
    /// model with the earlier passes' updates (a learned optimiser's steps); 1 is MEND.
    public var iterations = 1
    /// Counterfactual neighbours of each edit (0: none): the edit's prompt with other subjects
    /// (``neighbourSubjects``). The update's input factors are projected off the span of every
    /// edited matrix's inputs on them, so the edit leaves the same relation about other
    /// subjects alone (Independence for Locality on hard negatives, built at edit time).
    public var neighbours = 0
    /// With ``neighbours``: the most the projected input factors of a module are scaled back
    /// up toward the unprojected ones' size, `min(this, ‖U‖/‖PU‖)` (a constant to the gradient),
    /// so that the edit keeps its strength on its own subject; 1 leaves them as projected.
    public var neighbourRescale = 1.0
    public var neighbourSubjects = Self.defaultNeighbourSubjects

    /// Subjects of many kinds (people, places, organisations, works, things) for ``neighbours``.
    public static let defaultNeighbourSubjects = [
        "Barack Obama", "Paris", "Microsoft", "the Amazon River", "Albert Einstein", "Japan", "Toyota", "Mount Everest",
        "William Shakespeare", "Brazil", "the Beatles", "Google", "Marie Curie", "London", "the Nile", "Sony",
        "Pablo Picasso", "Germany", "NASA", "the Moon", "Leonardo da Vinci", "Canada", "Nokia", "Lionel Messi",
        "Egypt", "BMW", "Wolfgang Amadeus Mozart", "Australia", "the Louvre", "Apple", "Charles Darwin", "India",
    ]
    /// Seed of the initial weights.
    public var seed: UInt64

    /// The project's defaults (IBKE.md §3.9, METHODS.md §7): the MLP matrices of the last three
    /// blocks, `r` ≈ D/8 rounded to 64 (256 for SmolLM2's D = 2112), `d_z = r/2`. The key-value
    /// write edits `ffn_down` of MEMIT's band of layers at the subject's last token, with MEMIT's λ
    /// and a step size that starts near the value shift one locate-then-edit step makes.
    public static func defaults(_ design: Design, write: Write = .gradient, config: TransformerConfig) -> HypernetworkSettings {
        let d = config.hiddenSize + config.feedForwardSize
        let rank = max(64, min(1920, (d / 8 + 32) / 64 * 64))
        let keyWeight = MassEditingHyperparameters.lambda(feedForwardSize: config.feedForwardSize)
        if write == .keyValue {
            let band = MassEditingHyperparameters.defaults(layerCount: config.layerCount, feedForwardSize: config.feedForwardSize)
            return HypernetworkSettings(
                design: design, layers: band.layers, matrices: [.feedForwardDown], rank: rank, latentSize: rank / 2,
                initialStepSize: 0.5, initialLogVariance: -4, rows: .subjectLast, write: write, keyWeight: keyWeight, seed: 0)
        }
        let matrices: [ParameterID.Kind] =
            config.feedForward.isGated
            ? [.feedForwardGate, .feedForwardUp, .feedForwardDown] : [.feedForwardUp, .feedForwardDown]
        return HypernetworkSettings(
            design: design, layers: Array(max(0, config.layerCount - 3)..<config.layerCount), matrices: matrices,
            rank: rank, latentSize: rank / 2, initialStepSize: 1e-4, initialLogVariance: -4, rows: .allNonzero,
            write: write, keyWeight: keyWeight, seed: 0)
    }

    /// The edited matrices, block by block.
    public var modules: [ParameterID] { layers.flatMap { l in matrices.map { ParameterID(layer: l, $0) } } }

    /// Reads a JSON/YAML object over the defaults for `design` (`design` in the file wins).
    public init(reading reader: inout HyperparameterReader, design fallback: Design, config: TransformerConfig) throws {
        let designName = try reader.string("design", default: fallback.rawValue)
        guard let design = Design(rawValue: designName) else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "design",
                expected: "one of \(Design.allCases.map(\.rawValue).joined(separator: ", ")), found \(designName)")
        }
        let writeName = try reader.string("write", default: Write.gradient.rawValue)
        guard let write = Write(rawValue: writeName) else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "write",
                expected: "gradient or key_value, found \(writeName)")
        }
        self = .defaults(design, write: write, config: config)
        layers = try reader.ints("layers", default: layers)
        try reader.checkLayers(layers, layerCount: config.layerCount)
        try reader.checkDistinct(layers)
        let names = try reader.strings("matrices", "inner_params", default: matrices.map(\.rawValue))
        matrices = try names.map { name in
            guard let kind = FineTuning.Hyperparameters.moduleKind(name), !ParameterID(layer: 0, kind).isNorm else {
                throw EditorError.invalidHyperparameter(
                    file: reader.file, key: "matrices",
                    expected: "matrix names (ffn_gate, mlp.up_proj, …), found \(name)")
            }
            return kind
        }
        rank = try reader.int("rank", default: rank, in: 1...4096)
        latentSize = try reader.int("latent_size", "d_z", default: latentSize, in: 1...4096)
        initialStepSize = try reader.double("edit_lr", "initial_step_size", default: initialStepSize)
        initialLogVariance = try reader.double("initial_log_variance", default: initialLogVariance)
        let rowName = try reader.string("rows", default: rows.rawValue)
        guard let rows = RowSelection(rawValue: rowName) else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "rows",
                expected: "\(RowSelection.allCases.map(\.rawValue).joined(separator: ", ")), found \(rowName)")
        }
        self.rows = rows
        keyWeight = try reader.double("mom2_update_weight", "key_weight", default: keyWeight)
        iterations = try reader.int("iterations", default: iterations)
        neighbours = try reader.int("neighbours", default: neighbours)
        neighbourSubjects = try reader.strings("neighbour_subjects", default: neighbourSubjects)
        neighbourRescale = try reader.double("neighbour_rescale", default: neighbourRescale)
        guard (1...16).contains(iterations) else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "iterations", expected: "1 to 16, found \(iterations)")
        }
        seed = UInt64(try reader.int("seed", default: Int(seed)))
        try reader.finish()
        try checkNeighbours(file: reader.file)
        if write == .keyValue {
            guard matrices == [.feedForwardDown], rows == .subjectLast, keyWeight > 0 else {
                throw EditorError.invalidHyperparameter(
                    file: reader.file, key: "write",
                    expected: "key_value writes ffn_down at rows subject_last with mom2_update_weight > 0")
            }
        }
        guard !layers.isEmpty, !matrices.isEmpty, rank >= 1, latentSize >= 1, initialStepSize > 0 else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "layers/matrices/rank/latent_size/edit_lr",
                expected: "at least one layer and matrix, rank ≥ 1, latent_size ≥ 1, edit_lr > 0")
        }
    }

    /// Refuses neighbour settings that cannot be carried out.
    func checkNeighbours(file: String) throws {
        func invalid(_ expected: String) -> EditorError { .invalidHyperparameter(file: file, key: "neighbours", expected: expected) }
        guard (0...neighbourSubjects.count).contains(neighbours), !neighbourSubjects.contains(where: \.isEmpty) else {
            throw invalid("0 to \(neighbourSubjects.count) (the neighbour_subjects given, none empty), found \(neighbours)")
        }
        guard neighbours == 0 || matrices.allSatisfy({ ParameterID(layer: 0, $0).inputPoint != nil }) else {
            throw invalid("0 when attn_output is edited (its input is not captured)")
        }
        guard neighbours == 0 || write == .gradient else { throw invalid("0 with write key_value (its keys are specific already)") }
        guard (1...100).contains(neighbourRescale) else {
            throw EditorError.invalidHyperparameter(file: file, key: "neighbour_rescale", expected: "1 to 100, found \(neighbourRescale)")
        }
    }

    init(
        design: Design, layers: [Int], matrices: [ParameterID.Kind], rank: Int, latentSize: Int,
        initialStepSize: Double, initialLogVariance: Double, rows: RowSelection, write: Write, keyWeight: Double,
        seed: UInt64
    ) {
        self.design = design
        self.layers = layers
        self.matrices = matrices
        self.rank = rank
        self.latentSize = latentSize
        self.initialStepSize = initialStepSize
        self.initialLogVariance = initialLogVariance
        self.rows = rows
        self.write = write
        self.keyWeight = keyWeight
        self.seed = seed
    }

    public var json: JSONValue {
        var object: JSONObject = [
            "design": .string(design.rawValue),
            "layers": .array(layers.map { .int($0) }),
            "matrices": .array(matrices.map { .string($0.rawValue) }),
            "rank": .int(rank),
        ]
        object.updateValue(.int(latentSize), forKey: "latent_size")
        object.updateValue(.double(initialLogVariance), forKey: "initial_log_variance")
        object.updateValue(.double(initialStepSize), forKey: "edit_lr")
        object.updateValue(.string(rows.rawValue), forKey: "rows")
        // Written only when not the default, so that older editor files read back unchanged.
        if iterations != 1 { object.updateValue(.int(iterations), forKey: "iterations") }
        if neighbours != 0 {
            object.updateValue(.int(neighbours), forKey: "neighbours")
            object.updateValue(.array(neighbourSubjects.map { .string($0) }), forKey: "neighbour_subjects")
            if neighbourRescale != 1 { object.updateValue(.double(neighbourRescale), forKey: "neighbour_rescale") }
        }
        if write != .gradient {
            object.updateValue(.string(write.rawValue), forKey: "write")
            object.updateValue(.double(keyWeight), forKey: "mom2_update_weight")
        }
        object.updateValue(.int(Int(seed)), forKey: "seed")
        return .object(object)
    }
}
