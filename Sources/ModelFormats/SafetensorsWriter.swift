import Foundation
import TensorCore

/// Writes safetensors files (edit deltas, converted weights) atomically (``AtomicFile``): a
/// reader (or a crash) sees either the old file or the complete new one, never a partial write.
///
/// Layout follows the reference implementation: the header is compact JSON padded with spaces
/// to a multiple of 8 bytes, `__metadata__` first, and tensors are stored in order of
/// decreasing element size (stable, so equal-size tensors keep the caller's order), which keeps
/// every tensor aligned to its element size.
public enum SafetensorsWriter {
    /// One tensor to write: a name, a row-major shape and its values or raw bytes.
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let dtype: SafetensorsDType
        let payload: Payload

        enum Payload: Sendable {
            case floats([Float])
            case bytes([UInt8])
        }

        /// A float32 tensor.
        public init(name: String, shape: [Int], floats: [Float]) {
            self.name = name
            self.shape = shape
            self.dtype = .f32
            self.payload = .floats(floats)
        }

        /// A tensor of any dtype from its little-endian bytes (e.g. copied from another file).
        public init(name: String, shape: [Int], dtype: SafetensorsDType, bytes: [UInt8]) {
            self.name = name
            self.shape = shape
            self.dtype = dtype
            self.payload = .bytes(bytes)
        }

        /// An F16 tensor from floats, rounded to nearest even.
        public static func float16(name: String, shape: [Int], floats: [Float]) -> Entry {
            Entry(
                name: name, shape: shape, dtype: .f16,
                bytes: littleEndianBytes(floats.map(HalfPrecision.floatToF16)))
        }

        /// A BF16 tensor from floats, rounded to nearest even.
        public static func bfloat16(name: String, shape: [Int], floats: [Float]) -> Entry {
            Entry(
                name: name, shape: shape, dtype: .bf16,
                bytes: littleEndianBytes(floats.map(HalfPrecision.floatToBF16)))
        }

        var byteCount: Int {
            switch payload {
            case .floats(let values): values.count * 4
            case .bytes(let bytes): bytes.count
            }
        }

        private static func littleEndianBytes(_ values: [UInt16]) -> [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(values.count * 2)
            for v in values {
                bytes.append(UInt8(truncatingIfNeeded: v))
                bytes.append(UInt8(truncatingIfNeeded: v >> 8))
            }
            return bytes
        }
    }

    /// Writes `tensors` and `metadata` (the header's `__metadata__`) to `url`, atomically.
    ///
    /// - Throws: ``SafetensorsError/invalidTensor(file:tensor:reason:)`` before anything is
    ///   written if a name is empty, duplicated or `__metadata__`, a dimension is negative or
    ///   the values do not match the shape; ``SafetensorsError/writeFailed(file:reason:)`` if
    ///   the file system fails (the destination is then left as it was).
    public static func write(
        tensors: [Entry], metadata: [String: String] = [:], to url: URL
    ) throws {
        try write(tensors: tensors, metadata: metadata, to: url, beforeRename: {})
    }

    /// ``write(tensors:metadata:to:)`` with a hook run after the temporary file is complete and
    /// before it replaces the destination; tests use it to observe and to simulate failures.
    static func write(
        tensors: [Entry], metadata: [String: String], to url: URL,
        beforeRename: () throws -> Void
    ) throws {
        let path = url.path
        try validate(tensors, file: path)
        let ordered = orderedForAlignment(tensors)
        let header = headerBytes(ordered, metadata: metadata)

        try AtomicFile.write(
            to: url, failure: { SafetensorsError.writeFailed(file: path, reason: $0) },
            beforeRename: beforeRename
        ) { file in
            var length = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &length) { try file.write($0) }
            try file.write(header)
            for entry in ordered {
                switch entry.payload {
                case .floats(let values):
                    #if _endian(little)
                    try file.write(values)
                    #else
                    try file.write(values.map { $0.bitPattern.littleEndian })
                    #endif
                case .bytes(let bytes):
                    try file.write(bytes)
                }
            }
        }
    }

    // MARK: Layout

    private static func validate(_ tensors: [Entry], file: String) throws {
        var seen = Set<String>()
        for entry in tensors {
            func invalid(_ reason: String) -> SafetensorsError {
                .invalidTensor(file: file, tensor: entry.name, reason: reason)
            }
            guard !entry.name.isEmpty else { throw invalid("empty name") }
            guard entry.name != "__metadata__" else { throw invalid("reserved name") }
            guard seen.insert(entry.name).inserted else { throw invalid("duplicate name") }
            guard entry.shape.allSatisfy({ $0 >= 0 }) else {
                throw invalid("negative dimension in shape \(entry.shape)")
            }
            var elements = 1
            for dim in entry.shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
                guard !overflow else { throw invalid("shape \(entry.shape) overflows") }
                elements = product
            }
            let expected = elements * entry.dtype.byteSize
            guard entry.byteCount == expected else {
                throw invalid(
                    "shape \(entry.shape) with dtype \(entry.dtype.rawValue) needs \(expected) "
                        + "bytes, got \(entry.byteCount)")
            }
        }
    }

    /// Stable sort by decreasing element size, so each tensor starts at a multiple of its size.
    private static func orderedForAlignment(_ tensors: [Entry]) -> [Entry] {
        tensors.enumerated()
            .sorted {
                ($1.element.dtype.byteSize, $0.offset) < ($0.element.dtype.byteSize, $1.offset)
            }
            .map(\.element)
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes.
    static func headerBytes(_ ordered: [Entry], metadata: [String: String]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let fields = metadata.sorted { $0.key < $1.key }
                .map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            parts.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        var offset = 0
        for entry in ordered {
            let end = offset + entry.byteCount
            let shape = entry.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\(jsonString(entry.name)):{\"dtype\":\"\(entry.dtype.rawValue)\","
                    + "\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var bytes = Array("{\(parts.joined(separator: ","))}".utf8)
        while bytes.count % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    /// A JSON string literal (RFC 8259 escaping).
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
