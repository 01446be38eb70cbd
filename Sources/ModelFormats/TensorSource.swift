import Foundation
import TensorCore

/// A checkpoint file (or set of files) that holds named tensors: GGUF or safetensors.
///
/// Formats know nothing of models: a source only says which tensors exist, their shapes and
/// how to read them as float32. Shapes are row-major (numpy/PyTorch order): a linear weight
/// is `[out, in]`. For GGUF this is the reverse of the file's `ne` dimensions.
public protocol TensorSource: Sendable {
    /// The file (or, for sharded checkpoints, the index or folder) the tensors come from.
    var url: URL { get }
    /// Every tensor name in the checkpoint, in file order.
    var tensorNames: [String] { get }
    /// The row-major shape of a tensor, or nil if there is no such tensor.
    func shape(of name: String) -> [Int]?
    /// A short name of the tensor's storage type as the file declares it ("F32", "Q4_1", "BF16").
    func typeName(of name: String) -> String?
    /// Reads (dequantizing or converting as needed) a tensor into `destination`, which must
    /// hold exactly as many floats as the tensor has elements.
    func readFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws
    /// The tensor's stored bytes when they are blocks the quantized kernels compute with (a
    /// GGUF tensor in one of ``QuantizedFormat``), with the object that keeps them mapped; nil
    /// otherwise (float32 data, safetensors).
    func quantizedBlocks(of name: String) -> (format: QuantizedFormat, bytes: UnsafeRawBufferPointer, owner: AnyObject)?
}

extension TensorSource {
    public func quantizedBlocks(of name: String) -> (format: QuantizedFormat, bytes: UnsafeRawBufferPointer, owner: AnyObject)? {
        nil
    }
}
