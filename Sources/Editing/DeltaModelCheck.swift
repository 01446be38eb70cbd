import Foundation
import Models

extension WeightDelta {
    /// The metadata key holding the ``LanguageModel/contentHash()`` of the model a delta was
    /// made for: a delta added to another model's weights silently corrupts it.
    public static let modelHashKey = "ibke.model_sha256"

    /// Checks that this delta was made for the model whose content hash is `modelHash`.
    ///
    /// - Parameters:
    ///   - source: the delta's file name, for error messages.
    ///   - allowUnverified: accept a delta that does not name its model (written by hand or by
    ///     another tool); a delta that names another model is refused whatever this says.
    /// - Throws: ``DeltaError/wrongModel(deltaModel:model:file:)`` or
    ///   ``DeltaError/unverifiedModel(file:)``.
    public func checkModel(hash modelHash: String, source: String, allowUnverified: Bool) throws {
        guard let deltaModel = metadata[Self.modelHashKey] else {
            if allowUnverified { return }
            throw DeltaError.unverifiedModel(file: source)
        }
        guard deltaModel == modelHash else {
            throw DeltaError.wrongModel(deltaModel: deltaModel, model: modelHash, file: source)
        }
    }
}
