import Foundation
import TensorCore

/// New contents for one tensor of a GGUF copy: a storage type and its bytes.
public struct GGUFTensorData: Sendable {
    public let type: GGMLType
    public let bytes: [UInt8]

    public init(type: GGMLType, bytes: [UInt8]) {
        self.type = type
        self.bytes = bytes
    }

    /// Float32 values, stored as F32.
    public static func f32(_ values: [Float]) -> GGUFTensorData {
        GGUFTensorData(type: .f32, bytes: littleEndianBytes(values.map(\.bitPattern)))
    }

    /// Values rounded to nearest-even F16.
    public static func f16(_ values: [Float]) -> GGUFTensorData {
        GGUFTensorData(type: .f16, bytes: littleEndianBytes(values.map(HalfPrecision.floatToF16)))
    }

    private static func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * MemoryLayout<T>.size)
        for v in values { bytes.appendLittleEndian(v) }
        return bytes
    }
}

extension GGUFFile {
    /// Writes a copy of this file with the data (and type) of some tensors replaced, atomically.
    ///
    /// The version, the metadata (copied as stored, `general.alignment` included) and the tensors'
    /// order, names and dimensions are kept; every tensor not replaced is copied byte for byte,
    /// quantization and all. Offsets are recomputed, each tensor's data padded to the alignment
    /// as llama.cpp and gguf-py write it, so a copy with nothing replaced is identical to a file
    /// they wrote.
    ///
    /// - Throws: ``GGUFError/invalidTensorInfo(file:tensor:problem:)`` before anything is
    ///   written for a replacement that names no tensor or does not fit its dimensions;
    ///   ``GGUFError/writeFailed(file:reason:)`` if the file system fails.
    ///
    /// - Parameter addedStrings: string metadata appended after the source's, for keys the
    ///   source does not have (a key it has keeps its value).
    public func writeCopy(
        to url: URL, replacing replacements: [String: GGUFTensorData],
        addedStrings: [(key: String, value: String)] = []
    ) throws {
        let added = addedStrings.filter { metadata[$0.key] == nil }
        let destination = url.lastPathComponent
        for (name, data) in replacements {
            guard let info = tensorInfo(name) else {
                throw GGUFError.invalidTensorInfo(file: destination, tensor: name, problem: "is not in \(self.url.lastPathComponent)")
            }
            let rowLength = info.dimensions.first ?? 1
            let expected = info.elementCount / data.type.blockSize * data.type.bytesPerBlock
            guard rowLength % data.type.blockSize == 0, data.bytes.count == expected else {
                throw GGUFError.invalidTensorInfo(
                    file: destination, tensor: name,
                    problem: "\(data.bytes.count) bytes of \(data.type) do not fit dimensions \(info.dimensions)")
            }
        }
        let align = { (n: Int) in (n + self.alignment - 1) / self.alignment * self.alignment }
        var header: [UInt8] = Array("GGUF".utf8)
        header.appendLittleEndian(version)
        header.appendLittleEndian(UInt64(tensorInfos.count))
        header.appendLittleEndian(UInt64(metadataKeys.count + added.count))
        header.append(contentsOf: rawMetadata)
        for (key, value) in added { header.appendGGUFEntry(key: key, value: .string(value)) }
        var offset = 0
        for info in tensorInfos {
            let replacement = replacements[info.name]
            header.appendGGUFString(info.name)
            header.appendLittleEndian(UInt32(info.dimensions.count))
            for d in info.dimensions { header.appendLittleEndian(UInt64(d)) }
            header.appendLittleEndian((replacement?.type ?? info.type).rawValue)
            header.appendLittleEndian(UInt64(offset))
            offset = align(offset + (replacement?.bytes.count ?? info.byteCount))
        }
        try AtomicFile.write(to: url, failure: { GGUFError.writeFailed(file: url.path, reason: $0) }) { file in
            try file.write(header)
            try file.writeZeros(align(header.count) - header.count)
            for info in tensorInfos {
                let count: Int
                if let replacement = replacements[info.name] {
                    try file.write(replacement.bytes)
                    count = replacement.bytes.count
                } else {
                    // rawBytes is nil only for a name the file lacks.
                    try file.write(rawBytes(of: info.name)!)
                    count = info.byteCount
                }
                try file.writeZeros(align(count) - count)
            }
        }
    }
}

extension [UInt8] {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
