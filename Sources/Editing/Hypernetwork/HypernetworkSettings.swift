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
    /// Seed of the initial weights.
    public var seed: UInt64

    /// The project's defaults (IBKE.md §3.9, METHODS.md §7): the MLP matrices of the last three
    /// blocks, `r` ≈ D/8 rounded to 64 (256 for SmolLM2's D = 2112), `d_z = r/2`.
    public static func defaults(_ design: Design, config: TransformerConfig) -> HypernetworkSettings {
        let matrices: [ParameterID.Kind] = config.feedForward == .swiglu
            ? [.feedForwardGate, .feedForwardUp, .feedForwardDown] : [.feedForwardUp, .feedForwardDown]
        let d = config.hiddenSize + config.feedForwardSize
        let rank = max(64, min(1920, (d / 8 + 32) / 64 * 64))
        return HypernetworkSettings(
            design: design, layers: Array(max(0, config.layerCount - 3)..<config.layerCount), matrices: matrices,
            rank: rank, latentSize: rank / 2, initialStepSize: 1e-4, initialLogVariance: -4, rows: .allNonzero, seed: 0)
    }

    /// The edited matrices, block by block.
    public var modules: [ParameterID] { layers.flatMap { l in matrices.map { ParameterID(layer: l, $0) } } }

    /// Reads a JSON/YAML object over the defaults for `design` (`design` in the file wins).
    public init(reading reader: inout HyperparameterReader, design fallback: Design, config: TransformerConfig) throws {
        let designName = try reader.string("design", default: fallback.rawValue)
        guard let design = Design(rawValue: designName) else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "design",
                                                    expected: "one of \(Design.allCases.map(\.rawValue).joined(separator: ", ")), found \(designName)")
        }
        self = .defaults(design, config: config)
        layers = try reader.ints("layers", default: layers)
        try reader.checkLayers(layers, layerCount: config.layerCount)
        let names = try reader.strings("matrices", "inner_params", default: matrices.map(\.rawValue))
        matrices = try names.map { name in
            guard let kind = FineTuning.Hyperparameters.moduleKind(name), !ParameterID(layer: 0, kind).isNorm else {
                throw EditorError.invalidHyperparameter(file: reader.file, key: "matrices",
                                                        expected: "matrix names (ffn_gate, mlp.up_proj, …), found \(name)")
            }
            return kind
        }
        rank = try reader.int("rank", default: rank)
        latentSize = try reader.int("latent_size", "d_z", default: latentSize)
        initialStepSize = try reader.double("edit_lr", "initial_step_size", default: initialStepSize)
        initialLogVariance = try reader.double("initial_log_variance", default: initialLogVariance)
        let rowName = try reader.string("rows", default: rows.rawValue)
        guard let rows = RowSelection(rawValue: rowName) else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "rows",
                                                    expected: "all_nonzero or target_only, found \(rowName)")
        }
        self.rows = rows
        seed = UInt64(try reader.int("seed", default: Int(seed)))
        try reader.finish()
        guard !layers.isEmpty, !matrices.isEmpty, rank >= 1, latentSize >= 1, initialStepSize > 0 else {
            throw EditorError.invalidHyperparameter(file: reader.file, key: "layers/matrices/rank/latent_size/edit_lr",
                                                    expected: "at least one layer and matrix, rank ≥ 1, latent_size ≥ 1, edit_lr > 0")
        }
    }

    init(design: Design, layers: [Int], matrices: [ParameterID.Kind], rank: Int, latentSize: Int,
         initialStepSize: Double, initialLogVariance: Double, rows: RowSelection, seed: UInt64) {
        self.design = design
        self.layers = layers
        self.matrices = matrices
        self.rank = rank
        self.latentSize = latentSize
        self.initialStepSize = initialStepSize
        self.initialLogVariance = initialLogVariance
        self.rows = rows
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
        object.updateValue(.int(Int(seed)), forKey: "seed")
        return .object(object)
    }
}
