import Foundation
import TensorCore

/// Where one tensor lives in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// The tensor's name ("blk.0.attn_q.weight").
    public let name: String
    /// The file's `ne` dimensions, fastest-varying first (ggml order): a linear weight is
    /// `[in, out]`.
    public let dimensions: [Int]
    /// The storage type.
    public let type: GGMLType
    /// Byte offset of the data from the start of the data section (as stored in the file).
    public let offset: Int
    /// Bytes of data.
    public let byteCount: Int

    /// Row-major shape (numpy/PyTorch order): `dimensions` reversed, so a linear weight is
    /// `[out, in]`.
    public var shape: [Int] { dimensions.reversed() }

    /// The number of elements (1 for a tensor with no dimensions).
    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// A GGUF model file (versions 2 and 3, little-endian), memory-mapped.
///
/// Opening parses and validates the whole header: metadata, tensor infos, and that every
/// tensor's data lies inside the file. Tensor data is not touched until it is read, and is read
/// straight from the mapping. See https://github.com/ggml-org/ggml/blob/master/docs/gguf.md.
public final class GGUFFile: TensorSource {
    /// The file.
    public let url: URL
    /// The GGUF version (2 or 3; they share the little-endian layout).
    public let version: UInt32
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// All metadata values by key.
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensorInfos: [GGUFTensorInfo]
    /// Every tensor name, in file order.
    public let tensorNames: [String]
    /// The data section's alignment (`general.alignment`, default 32).
    public let alignment: Int
    /// Absolute byte offset of the data section in the file.
    public let dataOffset: Int
    /// Where the metadata key-value pairs lie in the file, for copying them verbatim.
    let metadataRange: Range<Int>

    private let mapping: MappedFile
    private let tensorIndex: [String: Int]

    /// The alignment a file has when it does not set `general.alignment`.
    public static let defaultAlignment = 32

    /// Opens and validates a GGUF file.
    ///
    /// - Throws: ``GGUFError`` naming the file and the problem, for a file that cannot be opened,
    ///   is not GGUF v2/v3, is truncated, has malformed metadata or tensor infos, unknown tensor
    ///   types, duplicate names, or tensor data past the end of the file.
    public init(url: URL) throws {
        let fileName = url.lastPathComponent
        let mapping: MappedFile
        do {
            mapping = try MappedFile(url: url)
        } catch let error as MappedFileError {
            throw GGUFError.cannotOpen(file: url.path, reason: error.detail)
        }
        var parser = GGUFHeaderParser(bytes: mapping.bytes, file: fileName, owner: mapping)
        let header = try parser.parse()
        self.url = url
        self.mapping = mapping
        self.version = header.version
        self.metadataKeys = header.keys
        self.metadata = header.metadata
        self.tensorInfos = header.tensors
        self.tensorNames = header.tensors.map(\.name)
        self.alignment = header.alignment
        self.dataOffset = header.dataOffset
        self.metadataRange = header.metadataRange
        var index: [String: Int] = [:]
        index.reserveCapacity(header.tensors.count)
        for (i, info) in header.tensors.enumerated() { index[info.name] = i }
        self.tensorIndex = index
    }

    /// Releases the resident pages of the header (metadata and tensor directory), once a loader
    /// has read what it needs from them: 1.8 MB on SmolLM2, 6.5 MB on Gemma 3, mostly the
    /// tokenizer's vocabulary. Later reads of the metadata fault the pages back in.
    public func releaseHeaderPages() {
        mapping.releasePages(0..<dataOffset)
    }

    // MARK: Tensors

    /// The info of a tensor, or nil if there is no such tensor.
    public func tensorInfo(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensorInfos[$0] }
    }

    public func shape(of name: String) -> [Int]? {
        tensorInfo(name)?.shape
    }

    public func typeName(of name: String) -> String? {
        tensorInfo(name)?.type.name
    }

    /// The metadata key-value pairs as stored, a view into the mapping.
    var rawMetadata: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapping.bytes[metadataRange])
    }

    /// The tensor's stored bytes, a view into the mapping (valid while this file object lives).
    public func rawBytes(of name: String) -> UnsafeRawBufferPointer? {
        guard let info = tensorInfo(name), let base = mapping.bytes.baseAddress else {
            // A file with tensors is never empty, so only an unknown name gets here.
            return nil
        }
        return UnsafeRawBufferPointer(start: base + dataOffset + info.offset, count: info.byteCount)
    }

    public func quantizedBlocks(of name: String) -> (format: QuantizedFormat, bytes: UnsafeRawBufferPointer, owner: AnyObject)? {
        guard let info = tensorInfo(name), let format = QuantizedFormat(rawValue: Int32(info.type.rawValue)),
            let bytes = rawBytes(of: name)
        else { return nil }
        return (format, bytes, self)
    }

    /// Converts a tensor to float32 into `destination`, in parallel for large tensors.
    ///
    /// Values are bit-identical to gguf-py's `gguf.quants.dequantize` (0.19.0).
    /// - Throws: ``GGUFError`` if there is no such tensor, its type cannot be dequantized, or
    ///   `destination.count` differs from the tensor's element count.
    public func readFloats(
        _ name: String, into destination: UnsafeMutableBufferPointer<Float>
    )
        throws
    {
        let file = url.lastPathComponent
        guard let info = tensorInfo(name), let source = rawBytes(of: name) else {
            throw GGUFError.noSuchTensor(file: file, tensor: name)
        }
        guard info.type.canDequantize else {
            throw GGUFError.unsupportedType(file: file, tensor: name, type: info.type)
        }
        guard destination.count == info.elementCount else {
            throw GGUFError.destinationSize(
                file: file, tensor: name, expected: info.elementCount, actual: destination.count)
        }
        guard let output = destination.baseAddress, let input = source.baseAddress else { return }
        info.type.dequantize(input, into: output, elementCount: info.elementCount)
    }

    /// A tensor converted to float32, in row-major order of ``shape(of:)``.
    public func readFloats(_ name: String) throws -> [Float] {
        guard let info = tensorInfo(name) else {
            throw GGUFError.noSuchTensor(file: url.lastPathComponent, tensor: name)
        }
        return try [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
            try readFloats(name, into: buffer)
            initialized = buffer.count
        }
    }

    // MARK: Metadata

    /// A string value, or nil if the key is missing or not a string.
    public func string(_ key: String) -> String? { metadata[key]?.stringValue }

    /// An integer value of any integer type, or nil if missing, not an integer, or out of `Int`
    /// range.
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }

    /// A numeric value (float or integer) as a Double, or nil if missing or not numeric.
    public func double(_ key: String) -> Double? { metadata[key]?.doubleValue }

    /// A bool value, or nil if missing or not a bool.
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }

    /// An array value, or nil if missing or not an array.
    public func array(_ key: String) -> GGUFArray? { metadata[key]?.arrayValue }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`), or nil if missing or any element is not
    /// a string.
    public func strings(_ key: String) -> [String]? {
        array(key)?.mapAll(\.stringValue)
    }

    /// An array of integers (e.g. `tokenizer.ggml.token_type`), or nil if missing or any element
    /// is not an integer.
    public func ints(_ key: String) -> [Int]? {
        array(key)?.mapAll(\.intValue)
    }

    /// `general.architecture` ("llama", "qwen2", …): the prefix of the model's hyperparameter
    /// keys.
    public var architecture: String? { string("general.architecture") }

    /// The value of `<architecture>.<suffix>` (e.g. `architectureValue("block_count")` reads
    /// `llama.block_count` in a Llama file), or nil.
    public func architectureValue(_ suffix: String) -> GGUFValue? {
        guard let architecture else { return nil }
        return metadata["\(architecture).\(suffix)"]
    }
}

// MARK: - Header parsing

/// Everything the header says, validated.
struct GGUFHeader {
    var version: UInt32
    var keys: [String]
    var metadata: [String: GGUFValue]
    var tensors: [GGUFTensorInfo]
    var alignment: Int
    var dataOffset: Int
    var metadataRange: Range<Int>
}

/// Reads a GGUF header from a byte buffer with every read bounds-checked.
///
/// Counts in the file are never trusted for allocation: before reserving or looping, a count is
/// checked against the bytes left (each element takes at least a known number of bytes), so a
/// corrupt count fails fast with a truncation error instead of allocating gigabytes or looping.
struct GGUFHeaderParser {
    let bytes: UnsafeRawBufferPointer
    let file: String
    /// What keeps `bytes` alive: the arrays in the metadata point into them.
    let owner: AnyObject
    private var offset = 0

    /// Arrays nested deeper than this are rejected (no real file nests more than one level), so
    /// a crafted file cannot exhaust the stack.
    static let maxArrayNesting = 8
    /// GGML_MAX_DIMS.
    static let maxDimensions = 4

    init(bytes: UnsafeRawBufferPointer, file: String, owner: AnyObject) {
        self.bytes = bytes
        self.file = file
        self.owner = owner
    }

    mutating func parse() throws(GGUFError) -> GGUFHeader {
        // Magic: a short file is reported as a bad magic with the bytes it has.
        let magicBytes = Array(bytes.prefix(4))
        guard magicBytes == Array("GGUF".utf8) else {
            throw .badMagic(file: file, found: magicBytes)
        }
        offset = 4
        let version = try readUInt32("the version")
        guard version == 2 || version == 3 else {
            throw .unsupportedVersion(file: file, version: version)
        }
        let tensorCount = try readUInt64("the tensor count")
        let keyCount = try readUInt64("the metadata key count")
        // Smallest metadata entry: empty key (8) + value type (4) + 1-byte value.
        try requireCount(
            keyCount, minimumBytes: 13, "\(keyCount) metadata entries (at least 13 bytes each)")
        // Smallest tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
        try requireCount(
            tensorCount, minimumBytes: 24, "\(tensorCount) tensor infos (at least 24 bytes each)")

        let metadataStart = offset
        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(Int(keyCount))
        metadata.reserveCapacity(Int(keyCount))
        for i in 0..<Int(keyCount) {
            let key = try readString("the name of metadata entry #\(i)")
            let type = try readUInt32("the value type of metadata key '\(key)'")
            let value = try readValue(type: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .duplicateKey(file: file, key: key)
            }
            keys.append(key)
        }
        let metadataRange = metadataStart..<offset

        let alignment = try Self.alignment(from: metadata, file: file)

        var tensors: [GGUFTensorInfo] = []
        var seen = Set<String>()
        tensors.reserveCapacity(Int(tensorCount))
        seen.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let info = try readTensorInfo(index: i, alignment: alignment)
            guard seen.insert(info.name).inserted else {
                throw .duplicateTensor(file: file, tensor: info.name)
            }
            tensors.append(info)
        }

        // The data section starts at the next multiple of the alignment.
        let dataOffset = (offset + alignment - 1) / alignment * alignment
        for info in tensors {
            let (start, overflow) = dataOffset.addingReportingOverflow(info.offset)
            if overflow || start > bytes.count || info.byteCount > bytes.count - start {
                throw .dataPastEnd(
                    file: file, tensor: info.name, offset: overflow ? Int.max : start,
                    size: info.byteCount, fileSize: bytes.count)
            }
        }
        return GGUFHeader(
            version: version, keys: keys, metadata: metadata, tensors: tensors,
            alignment: alignment, dataOffset: dataOffset, metadataRange: metadataRange)
    }

    private static func alignment(
        from metadata: [String: GGUFValue], file: String
    )
        throws(GGUFError) -> Int
    {
        let key = "general.alignment"
        guard let value = metadata[key] else { return GGUFFile.defaultAlignment }
        guard let alignment = value.intValue else {
            throw .invalidMetadata(
                file: file, key: key, problem: "must be an integer, found \(value)")
        }
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw .invalidMetadata(
                file: file, key: key, problem: "\(alignment) is not a positive power of two")
        }
        return alignment
    }

    // MARK: Tensor infos

    private mutating func readTensorInfo(
        index: Int, alignment: Int
    ) throws(GGUFError)
        -> GGUFTensorInfo
    {
        let name = try readString("the name of tensor #\(index)")
        let dimensionCount = try readUInt32("the dimension count of tensor '\(name)'")
        guard dimensionCount <= Self.maxDimensions else {
            throw .invalidTensorInfo(
                file: file, tensor: name,
                problem:
                    "has \(dimensionCount) dimensions (GGML supports at most \(Self.maxDimensions))"
            )
        }
        var dimensions: [Int] = []
        var elementCount = 1
        for d in 0..<Int(dimensionCount) {
            let raw = try readUInt64("dimension \(d) of tensor '\(name)'")
            guard let ne = Int(exactly: raw) else {
                throw .invalidTensorInfo(
                    file: file, tensor: name, problem: "dimension \(d) is \(raw), out of range")
            }
            dimensions.append(ne)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: ne)
            guard !overflow else {
                throw .invalidTensorInfo(
                    file: file, tensor: name,
                    problem: "element count of dimensions \(dimensions) overflows")
            }
            elementCount = product
        }
        let typeNumber = try readUInt32("the type of tensor '\(name)'")
        guard let type = GGMLType(rawValue: typeNumber) else {
            throw .unknownType(file: file, tensor: name, type: typeNumber)
        }
        let rowLength = dimensions.first ?? 1
        guard rowLength % type.blockSize == 0 else {
            throw .notBlockMultiple(file: file, tensor: name, type: type, rowLength: rowLength)
        }
        let (byteCount, overflow) = (elementCount / type.blockSize).multipliedReportingOverflow(
            by: type.bytesPerBlock)
        guard !overflow else {
            throw .invalidTensorInfo(
                file: file, tensor: name, problem: "byte size of dimensions \(dimensions) overflows"
            )
        }
        let rawOffset = try readUInt64("the data offset of tensor '\(name)'")
        guard let dataOffset = Int(exactly: rawOffset) else {
            throw .dataPastEnd(
                file: file, tensor: name, offset: Int.max, size: byteCount, fileSize: bytes.count)
        }
        guard dataOffset % alignment == 0 else {
            throw .invalidTensorInfo(
                file: file, tensor: name,
                problem: "data offset \(dataOffset) is not a multiple of the alignment \(alignment)"
            )
        }
        return GGUFTensorInfo(
            name: name, dimensions: dimensions, type: type, offset: dataOffset, byteCount: byteCount
        )
    }

    // MARK: Metadata values

    /// The fewest bytes one value of a GGUF value type occupies (for count sanity checks).
    private static func minimumSize(ofValueType type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: 1  // uint8, int8, bool
        case 2, 3: 2  // uint16, int16
        case 4, 5, 6: 4  // uint32, int32, float32
        case 10, 11, 12: 8  // uint64, int64, float64
        case 8: 8  // string: its length
        case 9: 12  // array: element type + count
        default: nil
        }
    }

    private mutating func readValue(
        type: UInt32, key: String, depth: Int
    ) throws(GGUFError)
        -> GGUFValue
    {
        switch type {
        case 0: return .uint8(try read(UInt8.self, "the value of '\(key)'"))
        case 1: return .int8(Int8(bitPattern: try read(UInt8.self, "the value of '\(key)'")))
        case 2: return .uint16(try read(UInt16.self, "the value of '\(key)'"))
        case 3: return .int16(Int16(bitPattern: try read(UInt16.self, "the value of '\(key)'")))
        case 4: return .uint32(try read(UInt32.self, "the value of '\(key)'"))
        case 5: return .int32(Int32(bitPattern: try read(UInt32.self, "the value of '\(key)'")))
        case 6: return .float32(Float(bitPattern: try read(UInt32.self, "the value of '\(key)'")))
        case 7: return .bool(try read(UInt8.self, "the value of '\(key)'") != 0)
        case 8: return .string(try readString("the value of '\(key)'"))
        case 9: return try readArray(key: key, depth: depth)
        case 10: return .uint64(try read(UInt64.self, "the value of '\(key)'"))
        case 11: return .int64(Int64(bitPattern: try read(UInt64.self, "the value of '\(key)'")))
        case 12: return .float64(Double(bitPattern: try read(UInt64.self, "the value of '\(key)'")))
        default:
            throw .invalidMetadata(file: file, key: key, problem: "unknown value type \(type)")
        }
    }

    private mutating func readArray(key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        guard depth < Self.maxArrayNesting else {
            throw .invalidMetadata(
                file: file, key: key,
                problem: "arrays nested more than \(Self.maxArrayNesting) deep")
        }
        let elementType = try readUInt32("the element type of array '\(key)'")
        guard let minimumSize = Self.minimumSize(ofValueType: elementType) else {
            throw .invalidMetadata(
                file: file, key: key, problem: "unknown array element type \(elementType)")
        }
        let count = try readUInt64("the length of array '\(key)'")
        try requireCount(
            count, minimumBytes: minimumSize,
            "\(count) elements of array '\(key)' (at least \(minimumSize) bytes each)")
        // Checked and stepped over, not decoded: the array decodes its elements as they are read.
        let start = offset
        switch elementType {
        case 8:
            for _ in 0..<Int(count) { try skipString("a string of array '\(key)'") }
        case 9:
            for _ in 0..<Int(count) { _ = try readArray(key: key, depth: depth + 1) }
        default:
            offset += Int(count) * minimumSize  // within the file: requireCount checked it
        }
        let elements = GGUFArray.Encoded(
            elementType: elementType, bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<offset]), owner: owner)
        return .array(GGUFArray(encoded: elements, count: Int(count)))
    }

    // MARK: Primitive reads

    /// Throws unless `count` items of at least `minimumBytes` each fit in the rest of the file.
    private func requireCount(
        _ count: UInt64, minimumBytes: Int, _ what: @autoclosure () -> String
    )
        throws(GGUFError)
    {
        let remaining = UInt64(bytes.count - offset)
        if count > remaining / UInt64(minimumBytes) {
            let (needed, overflow) = count.multipliedReportingOverflow(by: UInt64(minimumBytes))
            throw .truncated(
                file: file, reading: what(), offset: offset,
                needed: overflow ? Int.max : Int(clamping: needed), fileSize: bytes.count)
        }
    }

    private func require(_ count: Int, _ what: @autoclosure () -> String) throws(GGUFError) {
        if count > bytes.count - offset {
            throw .truncated(
                file: file, reading: what(), offset: offset, needed: count, fileSize: bytes.count)
        }
    }

    private mutating func read<T: FixedWidthInteger>(
        _: T.Type, _ what: @autoclosure () -> String
    )
        throws(GGUFError) -> T
    {
        let size = MemoryLayout<T>.size
        try require(size, what())
        // Base address is non-nil: require passed for a non-zero size.
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    private mutating func readUInt32(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt32 {
        try read(UInt32.self, what())
    }

    private mutating func readUInt64(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt64 {
        try read(UInt64.self, what())
    }

    /// Steps over a GGUF string, checking its length against the file.
    private mutating func skipString(_ what: @autoclosure () -> String) throws(GGUFError) {
        let length = try readUInt64(what())
        guard length <= UInt64(bytes.count - offset) else {
            throw .truncated(
                file: file, reading: what(), offset: offset, needed: Int(clamping: length),
                fileSize: bytes.count)
        }
        offset += Int(length)
    }

    /// A GGUF string: uint64 byte length, then UTF-8 bytes (not NUL-terminated). Invalid UTF-8
    /// is repaired with U+FFFD rather than rejected, as llama.cpp does not validate it either.
    private mutating func readString(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let length = try readUInt64(what())
        guard length <= UInt64(bytes.count - offset) else {
            throw .truncated(
                file: file, reading: what(), offset: offset, needed: Int(clamping: length),
                fileSize: bytes.count)
        }
        let count = Int(length)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return String(decoding: slice, as: UTF8.self)
    }
}
