/// Why a GGUF file could not be read. Every message is one line that starts with the file name.
///
/// The reader is strict: a file that llama.cpp would reject, or whose data would be read out of
/// bounds, throws one of these at open time instead of producing garbage weights later.
public enum GGUFError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened or mapped.
    case cannotOpen(file: String, reason: String)
    /// The first four bytes are not "GGUF".
    case badMagic(file: String, found: [UInt8])
    /// A GGUF version other than 2 or 3 (or a big-endian file, whose version reads byte-swapped).
    case unsupportedVersion(file: String, version: UInt32)
    /// A read (or a count's minimum size) goes past the end of the file.
    case truncated(file: String, reading: String, offset: Int, needed: Int, fileSize: Int)
    /// A metadata value is malformed (unknown value type, nesting too deep, bad alignment).
    case invalidMetadata(file: String, key: String, problem: String)
    /// The same metadata key appears twice.
    case duplicateKey(file: String, key: String)
    /// A tensor's dimensions or offset are malformed.
    case invalidTensorInfo(file: String, tensor: String, problem: String)
    /// A tensor's type number is not a ggml type.
    case unknownType(file: String, tensor: String, type: UInt32)
    /// A tensor's row length (`ne[0]`) is not a multiple of its type's block size.
    case notBlockMultiple(file: String, tensor: String, type: GGMLType, rowLength: Int)
    /// Two tensors share a name.
    case duplicateTensor(file: String, tensor: String)
    /// A tensor's data (absolute `offset`, `size` bytes) does not fit in the file.
    case dataPastEnd(file: String, tensor: String, offset: Int, size: Int, fileSize: Int)
    /// A tensor type that is valid but that this package cannot convert to float32.
    case unsupportedType(file: String, tensor: String, type: GGMLType)
    /// A tensor name that is not in the file.
    case noSuchTensor(file: String, tensor: String)
    /// The destination buffer's size differs from the tensor's element count.
    case destinationSize(file: String, tensor: String, expected: Int, actual: Int)
    /// Writing a GGUF file failed (the destination is left as it was).
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let file, let reason):
            return "\(file): cannot open GGUF file: \(reason)"
        case .badMagic(let file, let found):
            let hex = found.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")
            return
                "\(file): not a GGUF file (magic bytes \(hex.isEmpty ? "none" : hex), "
                + "expected 47 47 55 46 \"GGUF\")"
        case .unsupportedVersion(let file, let version):
            if version == 1 {
                return "\(file): GGUF version 1 is not supported (only versions 2 and 3); "
                    + "re-convert the model with a current llama.cpp"
            }
            if version & 0xFFFF == 0 && version != 0 {
                return
                    "\(file): GGUF version field reads \(version) "
                    + "(0x\(String(version, radix: 16))): "
                    + "looks like a big-endian file, which is not supported"
            }
            return "\(file): unsupported GGUF version \(version) (only versions 2 and 3)"
        case .truncated(let file, let reading, let offset, let needed, let fileSize):
            return
                "\(file): truncated or corrupt at offset \(offset): "
                + "\(reading) needs \(needed) bytes, "
                + "but only \(max(0, fileSize - offset)) remain (file size \(fileSize))"
        case .invalidMetadata(let file, let key, let problem):
            return "\(file): metadata key '\(key)': \(problem)"
        case .duplicateKey(let file, let key):
            return "\(file): duplicate metadata key '\(key)'"
        case .invalidTensorInfo(let file, let tensor, let problem):
            return "\(file): tensor '\(tensor)': \(problem)"
        case .unknownType(let file, let tensor, let type):
            return "\(file): tensor '\(tensor)' has unknown GGML type \(type)"
        case .notBlockMultiple(let file, let tensor, let type, let rowLength):
            return "\(file): tensor '\(tensor)' row length \(rowLength) is not a multiple of the "
                + "\(type.name) block size \(type.blockSize)"
        case .duplicateTensor(let file, let tensor):
            return "\(file): duplicate tensor name '\(tensor)'"
        case .dataPastEnd(let file, let tensor, let offset, let size, let fileSize):
            return
                "\(file): tensor '\(tensor)' data (offset \(offset), \(size) bytes) extends past "
                + "end of file (size \(fileSize))"
        case .unsupportedType(let file, let tensor, let type):
            return
                "\(file): tensor '\(tensor)' has type \(type.name), which cannot be dequantized yet"
        case .noSuchTensor(let file, let tensor):
            return "\(file): no tensor named '\(tensor)'"
        case .destinationSize(let file, let tensor, let expected, let actual):
            return
                "\(file): tensor '\(tensor)' has \(expected) elements "
                + "but the destination holds \(actual)"
        case .writeFailed(let file, let reason):
            return "\(file): write failed: \(reason)"
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
