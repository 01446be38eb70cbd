import Foundation

/// Writes a new GGUF file (version 3): metadata and tensors given in full, as gguf-py's
/// `GGUFWriter` lays them out (tensor data aligned to `general.alignment`, 32 by default).
/// Used for files that are not a copy of a source, such as LoRA adapters;
/// ``GGUFFile/writeCopy(to:replacing:addedStrings:)`` writes copies.
public enum GGUFWriter {
    /// One tensor: its name, its dimensions in GGUF order (`ne[0]`, the contiguous one, first)
    /// and its bytes.
    public struct Tensor: Sendable {
        public let name: String
        public let dimensions: [Int]
        public let data: GGUFTensorData

        public init(name: String, dimensions: [Int], data: GGUFTensorData) {
            self.name = name
            self.dimensions = dimensions
            self.data = data
        }
    }

    public static let defaultAlignment = 32

    /// Writes `metadata` (in order) and `tensors` (in order) to `url`, atomically.
    ///
    /// - Throws: ``GGUFError/invalidTensorInfo(file:tensor:problem:)`` before anything is
    ///   written for a tensor whose bytes do not fit its dimensions or a name used twice;
    ///   ``GGUFError/writeFailed(file:reason:)`` if the file system fails.
    public static func write(to url: URL, metadata: [(key: String, value: GGUFValue)], tensors: [Tensor]) throws {
        let destination = url.lastPathComponent
        var names = Set<String>()
        for tensor in tensors {
            guard names.insert(tensor.name).inserted else {
                throw GGUFError.invalidTensorInfo(file: destination, tensor: tensor.name, problem: "is written twice")
            }
            let count = tensor.dimensions.reduce(1, *)
            let type = tensor.data.type
            guard !tensor.dimensions.isEmpty, tensor.dimensions.allSatisfy({ $0 > 0 }),
                tensor.dimensions[0] % type.blockSize == 0,
                tensor.data.bytes.count == count / type.blockSize * type.bytesPerBlock
            else {
                throw GGUFError.invalidTensorInfo(
                    file: destination, tensor: tensor.name,
                    problem: "\(tensor.data.bytes.count) bytes of \(type) do not fit dimensions \(tensor.dimensions)")
            }
        }
        let alignment = metadata.first { $0.key == "general.alignment" }?.value.intValue ?? defaultAlignment
        let align = { (n: Int) in (n + alignment - 1) / alignment * alignment }
        var header: [UInt8] = Array("GGUF".utf8)
        header.appendLittleEndian(UInt32(3))
        header.appendLittleEndian(UInt64(tensors.count))
        header.appendLittleEndian(UInt64(metadata.count))
        for (key, value) in metadata { header.appendGGUFEntry(key: key, value: value) }
        var offset = 0
        for tensor in tensors {
            header.appendGGUFString(tensor.name)
            header.appendLittleEndian(UInt32(tensor.dimensions.count))
            for d in tensor.dimensions { header.appendLittleEndian(UInt64(d)) }
            header.appendLittleEndian(tensor.data.type.rawValue)
            header.appendLittleEndian(UInt64(offset))
            offset = align(offset + tensor.data.bytes.count)
        }
        try AtomicFile.write(to: url, failure: { GGUFError.writeFailed(file: url.path, reason: $0) }) { file in
            try file.write(header)
            try file.writeZeros(align(header.count) - header.count)
            for tensor in tensors {
                try file.write(tensor.data.bytes)
                try file.writeZeros(align(tensor.data.bytes.count) - tensor.data.bytes.count)
            }
        }
    }
}

extension [UInt8] {
    mutating func appendGGUFString(_ text: String) {
        appendLittleEndian(UInt64(text.utf8.count))
        append(contentsOf: text.utf8)
    }

    /// A metadata entry: key, value type, value (GGUF's encoding).
    mutating func appendGGUFEntry(key: String, value: GGUFValue) {
        appendGGUFString(key)
        appendLittleEndian(value.typeCode)
        appendGGUFPayload(value)
    }

    private mutating func appendGGUFPayload(_ value: GGUFValue) {
        switch value {
        case .uint8(let v): appendLittleEndian(v)
        case .int8(let v): appendLittleEndian(v)
        case .uint16(let v): appendLittleEndian(v)
        case .int16(let v): appendLittleEndian(v)
        case .uint32(let v): appendLittleEndian(v)
        case .int32(let v): appendLittleEndian(v)
        case .uint64(let v): appendLittleEndian(v)
        case .int64(let v): appendLittleEndian(v)
        case .float32(let v): appendLittleEndian(v.bitPattern)
        case .float64(let v): appendLittleEndian(v.bitPattern)
        case .bool(let v): append(v ? 1 : 0)
        case .string(let v): appendGGUFString(v)
        case .array(let items):
            let type = items.elementType
            precondition(items.allSatisfy { $0.typeCode == type }, "a GGUF array holds values of one type")
            appendLittleEndian(type)
            appendLittleEndian(UInt64(items.count))
            for item in items { appendGGUFPayload(item) }
        }
    }
}

extension GGUFValue {
    /// GGUF's `gguf_type` code of the value.
    var typeCode: UInt32 {
        switch self {
        case .uint8: 0
        case .int8: 1
        case .uint16: 2
        case .int16: 3
        case .uint32: 4
        case .int32: 5
        case .float32: 6
        case .bool: 7
        case .string: 8
        case .array: 9
        case .uint64: 10
        case .int64: 11
        case .float64: 12
        }
    }
}
