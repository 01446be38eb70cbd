import Foundation
import ModelFormats
import Models

extension ModelExport {
    /// A copy of the source GGUF in which only the tensors whose values changed are rewritten.
    ///
    /// Which tensors changed is decided by comparing, bit for bit, what the model would store
    /// with what the source dequantizes to, rather than by trusting a list of edited names: an
    /// entry that leaves part of a fused matrix unchanged (q of q/k/v) keeps the other parts'
    /// quantized bytes, and nothing the model holds differently can be left out.
    ///
    /// - Returns: the names of the rewritten tensors, in file order.
    static func writeGGUF(_ model: LanguageModel, to url: URL, precision: Precision) throws -> [String] {
        guard let source = model.ggufFile else { throw ExportError.notFromGGUF(model.url) }
        var replacements: [String: GGUFTensorData] = [:]
        for tensor in model.transformer.checkpointTensors(.gguf) {
            guard let info = source.tensorInfo(tensor.name), info.elementCount == tensor.shape.reduce(1, *) else {
                throw ExportError.unsupported(
                    file: model.url.lastPathComponent,
                    detail: "tensor \(tensor.name) \(tensor.shape) of the model has no counterpart in the file")
            }
            if tensor.isFileBlocks { continue }  // still the file's own bytes
            let values = tensor.values()
            let stored = try source.readFloats(tensor.name)
            guard !values.elementsEqual(stored, by: { $0.bitPattern == $1.bitPattern }) else { continue }
            switch precision {
            case .f32: replacements[tensor.name] = .f32(values)
            case .f16: replacements[tensor.name] = .f16(values)
            case .source:
                replacements[tensor.name] = try requantized(values, as: info.type, tensor: tensor.name, file: model.url.lastPathComponent)
            }
        }
        try source.writeCopy(
            to: url, replacing: replacements,
            addedStrings: [(exportMarkerKey, "written by ibke from \(model.url.lastPathComponent)")])
        return source.tensorNames.filter { replacements[$0] != nil }
    }

    /// `values` of `tensor` in `type`, its source's type.
    static func requantized(_ values: [Float], as type: GGMLType, tensor: String, file: String) throws -> GGUFTensorData {
        switch type {
        case .f32: return .f32(values)
        case .f16: return .f16(values)
        default:
            guard let bytes = Quantize.quantize(values, as: type) else {
                throw ExportError.unsupported(
                    file: file,
                    detail: "\(tensor) is \(type); rewritten tensors can be stored as "
                        + (Quantize.formats.map(\.description) + ["F32", "F16"]).joined(separator: ", ")
                        + ", so store this one as F16 or F32")
            }
            return GGUFTensorData(type: type, bytes: bytes)
        }
    }
}
