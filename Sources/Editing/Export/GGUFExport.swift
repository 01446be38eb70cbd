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
            replacements[tensor.name] = precision == .f16 ? .f16(values) : .f32(values)
        }
        try source.writeCopy(to: url, replacing: replacements,
                             addedStrings: [(exportMarkerKey, "written by ibke from \(model.url.lastPathComponent)")])
        return source.tensorNames.filter { replacements[$0] != nil }
    }
}
