/// Everything that can go wrong reading or writing safetensors checkpoints.
///
/// Every case carries the path of the file at fault (the shard, the index or the destination),
/// and ``description`` is one line, `<file>: <problem>`, so a CLI can print it as is.
public enum SafetensorsError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file could not be opened, stat-ed or mapped, or is not a regular file.
    case cannotOpen(file: String, reason: String)
    /// The file is shorter than the 8-byte header length.
    case truncated(file: String, size: Int)
    /// The header length read from the first 8 bytes goes past the end of the file.
    case headerLengthBeyondFile(file: String, headerLength: UInt64, fileSize: Int)
    /// The header is larger than the format allows (100 MB, as the reference implementation).
    case headerTooLarge(file: String, headerLength: UInt64)
    /// The header is not valid JSON or not shaped like a safetensors header.
    case invalidHeader(file: String, reason: String)
    /// A tensor's dtype is not one the safetensors format defines.
    case unknownDType(file: String, tensor: String, dtype: String)
    /// A tensor's `data_offsets` are reversed or reach past the data section.
    case offsetsOutOfBounds(file: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    /// A tensor's byte range does not hold exactly shape × dtype bytes.
    case sizeMismatch(
        file: String, tensor: String, shape: [Int], dtype: String, expectedBytes: Int,
        actualBytes: Int)
    /// Two tensors share bytes.
    case overlappingTensors(file: String, first: String, second: String)
    /// Bytes of the data section belong to no tensor (the format forbids holes).
    case uncoveredBytes(file: String, begin: Int, end: Int)
    /// No tensor of that name.
    case tensorNotFound(file: String, tensor: String)
    /// The tensor's dtype has no float conversion here (only F32, F16 and BF16 have).
    case unsupportedDType(file: String, tensor: String, dtype: String)
    /// The caller's buffer does not hold exactly as many floats as the tensor has elements.
    case destinationSizeMismatch(file: String, tensor: String, expected: Int, actual: Int)
    /// The shard index (`model.safetensors.index.json`) is not valid.
    case invalidIndex(file: String, reason: String)
    /// The index names a shard file that does not exist.
    case shardMissing(index: String, shard: String)
    /// The index maps a tensor to a shard that does not contain it.
    case tensorMissingFromShard(index: String, tensor: String, shard: String)
    /// A shard contains a tensor the index does not list.
    case tensorNotInIndex(index: String, tensor: String, shard: String)
    /// Two shards contain a tensor of the same name.
    case duplicateTensor(index: String, tensor: String, firstShard: String, secondShard: String)
    /// A folder holds no index and no safetensors file, or several without an index.
    case noCheckpoint(folder: String, reason: String)
    /// The writer was given a tensor it cannot write.
    case invalidTensor(file: String, tensor: String, reason: String)
    /// Writing, syncing or renaming the output failed.
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let file, let reason):
            "\(file): cannot open: \(reason)"
        case .truncated(let file, let size):
            "\(file): file is \(size) bytes, too short for the 8-byte header length"
        case .headerLengthBeyondFile(let file, let headerLength, let fileSize):
            "\(file): header length \(headerLength) goes beyond the end of the file "
                + "(\(fileSize) bytes, \(max(fileSize - 8, 0)) after the length field)"
        case .headerTooLarge(let file, let headerLength):
            "\(file): header length \(headerLength) exceeds the 100 MB limit"
        case .invalidHeader(let file, let reason):
            "\(file): invalid header: \(reason)"
        case .unknownDType(let file, let tensor, let dtype):
            "\(file): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case .offsetsOutOfBounds(let file, let tensor, let begin, let end, let dataSize):
            "\(file): tensor '\(tensor)' data_offsets [\(begin), \(end)] are out of bounds "
                + "(data section is \(dataSize) bytes)"
        case .sizeMismatch(let file, let tensor, let shape, let dtype, let expected, let actual):
            "\(file): tensor '\(tensor)' has shape \(shape) and dtype \(dtype), which need "
                + "\(expected) bytes, but its data_offsets span \(actual) bytes"
        case .overlappingTensors(let file, let first, let second):
            "\(file): tensors '\(first)' and '\(second)' have overlapping data_offsets"
        case .uncoveredBytes(let file, let begin, let end):
            "\(file): data bytes \(begin)..<\(end) belong to no tensor (holes are not allowed)"
        case .tensorNotFound(let file, let tensor):
            "\(file): no tensor named '\(tensor)'"
        case .unsupportedDType(let file, let tensor, let dtype):
            "\(file): tensor '\(tensor)' has dtype \(dtype), which cannot be read as floats "
                + "(supported: F32, F16, BF16)"
        case .destinationSizeMismatch(let file, let tensor, let expected, let actual):
            "\(file): tensor '\(tensor)' has \(expected) elements but the destination holds "
                + "\(actual)"
        case .invalidIndex(let file, let reason):
            "\(file): invalid shard index: \(reason)"
        case .shardMissing(let index, let shard):
            "\(index): shard file '\(shard)' does not exist"
        case .tensorMissingFromShard(let index, let tensor, let shard):
            "\(index): tensor '\(tensor)' is mapped to shard '\(shard)', which does not contain it"
        case .tensorNotInIndex(let index, let tensor, let shard):
            "\(index): shard '\(shard)' contains tensor '\(tensor)', which the index does not list"
        case .duplicateTensor(let index, let tensor, let firstShard, let secondShard):
            "\(index): tensor '\(tensor)' appears in both shard '\(firstShard)' and shard "
                + "'\(secondShard)'"
        case .noCheckpoint(let folder, let reason):
            "\(folder): no safetensors checkpoint: \(reason)"
        case .invalidTensor(let file, let tensor, let reason):
            "\(file): cannot write tensor '\(tensor)': \(reason)"
        case .writeFailed(let file, let reason):
            "\(file): write failed: \(reason)"
        }
    }
}
