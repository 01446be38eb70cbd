import Foundation
import TensorCore

/// A tensor storage type as the safetensors format names it.
///
/// Every dtype of the format is listed so that any valid file opens and its byte ranges can be
/// checked; only ``f32``, ``f16`` and ``bf16`` convert to floats.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case u16 = "U16"
    case i16 = "I16"
    case u32 = "U32"
    case i32 = "I32"
    case u64 = "U64"
    case i64 = "I64"
    case f8E4M3 = "F8_E4M3"
    case f8E5M2 = "F8_E5M2"
    case f8E8M0 = "F8_E8M0"
    case f16 = "F16"
    case bf16 = "BF16"
    case f32 = "F32"
    case f64 = "F64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8E4M3, .f8E5M2, .f8E8M0: 1
        case .u16, .i16, .f16, .bf16: 2
        case .u32, .i32, .f32: 4
        case .u64, .i64, .f64: 8
        }
    }

    /// Whether ``SafetensorsFile/readFloats(_:into:)`` can convert this type.
    public var isConvertibleToFloat: Bool {
        self == .f32 || self == .f16 || self == .bf16
    }
}

/// Where one tensor lives in a safetensors file.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major shape as stored (PyTorch order); `[]` is a scalar.
    public let shape: [Int]
    /// Byte range relative to the start of the data section (after the header).
    public let dataOffsets: Range<Int>

    /// Number of elements (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// One `.safetensors` file, memory-mapped and validated when opened.
///
/// Layout: an 8-byte little-endian header length `N`, `N` bytes of JSON
/// (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {…}}`), then the
/// data section the offsets point into. Opening checks everything the format promises
/// (bounds, sizes, no overlaps, no holes) so that reads cannot go wrong later; a tensor's bytes
/// are read straight from the map.
public struct SafetensorsFile: TensorSource {
    public let url: URL
    /// Tensor names ordered by their position in the data section.
    public let tensorNames: [String]
    /// The header's `__metadata__` (empty if absent); HF writes `{"format": "pt"}`.
    public let metadata: [String: String]
    private let infos: [String: SafetensorsTensorInfo]
    private let mapping: MappedFile
    /// Byte offset of the data section in the file (8 + header length).
    private let dataStart: Int

    /// The reference implementation refuses headers above 100 MB; so do we, before parsing.
    static let maxHeaderLength: UInt64 = 100_000_000

    /// Maps and validates a safetensors file.
    ///
    /// - Throws: ``SafetensorsError`` naming the file and the first problem found.
    public init(url: URL) throws {
        let file = url.path
        let mapping: MappedFile
        do {
            mapping = try MappedFile(url: url)
        } catch let error as MappedFileError {
            throw SafetensorsError.cannotOpen(file: file, reason: error.detail)
        }
        let bytes = mapping.bytes
        guard bytes.count >= 8 else {
            throw SafetensorsError.truncated(file: file, size: bytes.count)
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw SafetensorsError.headerLengthBeyondFile(
                file: file, headerLength: headerLength, fileSize: bytes.count)
        }
        guard headerLength <= Self.maxHeaderLength else {
            throw SafetensorsError.headerTooLarge(file: file, headerLength: headerLength)
        }
        let dataStart = 8 + Int(headerLength)
        let header = Data(bytes[8..<dataStart])
        let dataSize = bytes.count - dataStart

        let json: JSONValue
        do {
            json = try JSONValue.parse(header)
        } catch {
            throw SafetensorsError.invalidHeader(file: file, reason: "not valid JSON: \(error)")
        }
        guard case .object(let entries) = json else {
            throw SafetensorsError.invalidHeader(
                file: file, reason: "expected a JSON object, found \(json.kindName)")
        }

        var metadata: [String: String] = [:]
        var infos: [String: SafetensorsTensorInfo] = [:]
        // Name order, so that a file with several problems always reports the same one.
        for (name, value) in entries.sorted(by: { $0.key < $1.key }) {
            if name == "__metadata__" {
                metadata = try Self.parseMetadata(value, file: file)
            } else {
                // Distinct JSON keys that Swift's `String` equates ("é", "e\u{301}").
                guard infos[name] == nil else {
                    throw SafetensorsError.invalidHeader(
                        file: file,
                        reason: "duplicate tensor name '\(name)' (canonically equivalent spellings)")
                }
                infos[name] = try Self.parseTensor(
                    name: name, value, dataSize: dataSize, file: file)
            }
        }

        let ordered = infos.values.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
                < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        try Self.checkCoverage(ordered, dataSize: dataSize, file: file)

        self.url = url
        self.tensorNames = ordered.map(\.name)
        self.metadata = metadata
        self.infos = infos
        self.mapping = mapping
        self.dataStart = dataStart
    }

    /// Where a tensor lives, or nil if there is no such tensor.
    public func info(of name: String) -> SafetensorsTensorInfo? {
        infos[name]
    }

    public func shape(of name: String) -> [Int]? {
        infos[name]?.shape
    }

    public func typeName(of name: String) -> String? {
        infos[name]?.dtype.rawValue
    }

    /// Calls `body` with a tensor's stored bytes (little-endian, possibly unaligned), without
    /// copying. The pointer is valid only inside `body`.
    public func withRawBytes<Result>(
        of name: String, _ body: (UnsafeRawBufferPointer) throws -> Result
    ) throws -> Result {
        guard let info = infos[name] else {
            throw SafetensorsError.tensorNotFound(file: url.path, tensor: name)
        }
        return try withExtendedLifetime(mapping) {
            let range = info.dataOffsets
            let all = mapping.bytes
            let slice = UnsafeRawBufferPointer(
                rebasing: all[(dataStart + range.lowerBound)..<(dataStart + range.upperBound)])
            return try body(slice)
        }
    }

    /// Converts a F32, F16 or BF16 tensor into `destination` (bit-exact; F16/BF16 through
    /// `HalfPrecision`).
    ///
    /// - Throws: ``SafetensorsError/tensorNotFound(file:tensor:)``,
    ///   ``SafetensorsError/unsupportedDType(file:tensor:dtype:)`` or
    ///   ``SafetensorsError/destinationSizeMismatch(file:tensor:expected:actual:)``.
    public func readFloats(
        _ name: String, into destination: UnsafeMutableBufferPointer<Float>
    )
        throws
    {
        guard let info = infos[name] else {
            throw SafetensorsError.tensorNotFound(file: url.path, tensor: name)
        }
        guard info.dtype.isConvertibleToFloat else {
            throw SafetensorsError.unsupportedDType(
                file: url.path, tensor: name, dtype: info.dtype.rawValue)
        }
        guard destination.count == info.elementCount else {
            throw SafetensorsError.destinationSizeMismatch(
                file: url.path, tensor: name, expected: info.elementCount,
                actual: destination.count)
        }
        try withRawBytes(of: name) { source in
            SafetensorsConversion.convert(source, dtype: info.dtype, into: destination)
        }
    }

    /// A tensor's values as a new `[Float]`; see ``readFloats(_:into:)``.
    public func readFloats(_ name: String) throws -> [Float] {
        guard let info = infos[name] else {
            throw SafetensorsError.tensorNotFound(file: url.path, tensor: name)
        }
        var values = [Float](repeating: 0, count: info.elementCount)
        try values.withUnsafeMutableBufferPointer { try readFloats(name, into: $0) }
        return values
    }

    // MARK: Header parsing

    private static func parseMetadata(_ value: JSONValue, file: String) throws -> [String: String] {
        guard case .object(let object) = value else {
            throw SafetensorsError.invalidHeader(
                file: file, reason: "__metadata__ must be an object, found \(value.kindName)")
        }
        var metadata: [String: String] = [:]
        for (key, entry) in object {
            guard case .string(let text) = entry else {
                throw SafetensorsError.invalidHeader(
                    file: file,
                    reason: "__metadata__ value for '\(key)' must be a string, found "
                        + entry.kindName)
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseTensor(
        name: String, _ value: JSONValue, dataSize: Int, file: String
    ) throws -> SafetensorsTensorInfo {
        func invalid(_ reason: String) -> SafetensorsError {
            .invalidHeader(file: file, reason: "tensor '\(name)': \(reason)")
        }
        guard case .object(let fields) = value else {
            throw invalid("expected an object, found \(value.kindName)")
        }
        guard case .string(let dtypeName)? = fields["dtype"] else {
            throw invalid("missing or non-string 'dtype'")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw SafetensorsError.unknownDType(file: file, tensor: name, dtype: dtypeName)
        }
        guard case .array(let shapeValues)? = fields["shape"] else {
            throw invalid("missing or non-array 'shape'")
        }
        var shape: [Int] = []
        for dim in shapeValues {
            guard case .int(let n) = dim, n >= 0 else {
                throw invalid("shape entries must be non-negative integers, found \(dim)")
            }
            shape.append(n)
        }
        guard case .array(let offsetValues)? = fields["data_offsets"], offsetValues.count == 2,
            case .int(let begin) = offsetValues[0], case .int(let end) = offsetValues[1]
        else {
            throw invalid("'data_offsets' must be an array of two integers")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw SafetensorsError.offsetsOutOfBounds(
                file: file, tensor: name, begin: begin, end: end, dataSize: dataSize)
        }
        var bytes = dtype.byteSize
        for dim in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw invalid("shape \(shape) overflows") }
            bytes = product
        }
        guard bytes == end - begin else {
            throw SafetensorsError.sizeMismatch(
                file: file, tensor: name, shape: shape, dtype: dtypeName, expectedBytes: bytes,
                actualBytes: end - begin)
        }
        return SafetensorsTensorInfo(
            name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    /// The format requires the tensors to tile the data section exactly: no overlap, no hole.
    private static func checkCoverage(
        _ ordered: [SafetensorsTensorInfo], dataSize: Int, file: String
    ) throws {
        var covered = 0
        var previous: SafetensorsTensorInfo?
        for info in ordered {
            let range = info.dataOffsets
            if range.lowerBound < covered, let previous {
                throw SafetensorsError.overlappingTensors(
                    file: file, first: previous.name, second: info.name)
            }
            if range.lowerBound > covered {
                throw SafetensorsError.uncoveredBytes(
                    file: file, begin: covered, end: range.lowerBound)
            }
            covered = range.upperBound
            previous = info
        }
        if covered < dataSize {
            throw SafetensorsError.uncoveredBytes(file: file, begin: covered, end: dataSize)
        }
    }
}

/// Stored bytes → Float, shared by the file and checkpoint readers.
enum SafetensorsConversion {
    /// Elements per parallel chunk: large enough that thread hand-off is noise.
    static let chunk = 1 << 16

    /// Converts little-endian F32/F16/BF16 `source` bytes into `destination`.
    ///
    /// The caller has checked the dtype and that `source` holds exactly
    /// `destination.count` elements.
    static func convert(
        _ source: UnsafeRawBufferPointer, dtype: SafetensorsDType,
        into destination: UnsafeMutableBufferPointer<Float>
    ) {
        let count = destination.count
        precondition(source.count == count * dtype.byteSize, "byte count does not match")
        guard count > 0 else { return }
        switch dtype {
        case .f32:
            #if _endian(little)
            UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
            #else
            forEachChunk(count) { range in
                for i in range {
                    destination[i] = Float(
                        bitPattern: UInt32(
                            littleEndian: source.loadUnaligned(
                                fromByteOffset: 4 * i, as: UInt32.self)))
                }
            }
            #endif
        case .f16:
            forEachChunk(count) { range in
                for i in range {
                    let bits = UInt16(
                        littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    destination[i] = HalfPrecision.f16ToFloat(bits)
                }
            }
        case .bf16:
            forEachChunk(count) { range in
                for i in range {
                    let bits = UInt16(
                        littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    destination[i] = HalfPrecision.bf16ToFloat(bits)
                }
            }
        default:
            preconditionFailure("\(dtype.rawValue) is not convertible to Float")
        }
    }

    /// Splits `0..<count` into chunks run by `parallelFor` (serially when there is one chunk).
    private static func forEachChunk(_ count: Int, _ body: (Range<Int>) -> Void) {
        let chunks = (count + chunk - 1) / chunk
        parallelFor(chunks) { c in
            body((c * chunk)..<min(count, (c + 1) * chunk))
        }
    }
}
