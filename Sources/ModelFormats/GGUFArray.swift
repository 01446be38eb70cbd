/// A GGUF array value, iterated element by element.
///
/// An array read from a file keeps only where its elements lie in the file's mapping and decodes
/// each one as it is read: a vocabulary held as enum values costs 24 bytes a token on top of the
/// mapped bytes it came from (19 MB for Gemma 3's 262,144 tokens and their scores and types, all
/// alive at once with the tokenizer built from them). An array built in code holds its values.
public struct GGUFArray: Sendable, Equatable, Sequence, ExpressibleByArrayLiteral {
    /// Elements in a mapped file, validated when the file was opened.
    struct Encoded: @unchecked Sendable {
        /// GGUF's type code of every element.
        let elementType: UInt32
        /// The elements' bytes, a view into `owner`'s read-only mapping.
        let bytes: UnsafeRawBufferPointer
        /// Keeps the mapping alive.
        let owner: AnyObject
    }

    private enum Storage: Sendable {
        case values([GGUFValue])
        case encoded(Encoded)
    }

    private let storage: Storage
    /// The number of elements.
    public let count: Int

    /// An array of `values`, which must share one GGUF type to be written to a file.
    public init(_ values: [GGUFValue]) {
        storage = .values(values)
        count = values.count
    }

    public init(arrayLiteral elements: GGUFValue...) { self.init(elements) }

    /// `count` elements of `encoded` (checked by ``GGUFHeaderParser``).
    init(encoded: Encoded, count: Int) {
        storage = .encoded(encoded)
        self.count = count
    }

    /// GGUF's type code of the elements; uint8 for an empty array built in code, as GGUF
    /// writes one.
    var elementType: UInt32 {
        switch storage {
        case .values(let values): values.first?.typeCode ?? GGUFValue.uint8(0).typeCode
        case .encoded(let encoded): encoded.elementType
        }
    }

    /// The elements as values (for an array read from a file, each one decoded now).
    public var values: [GGUFValue] { Array(self) }

    public var underestimatedCount: Int { count }

    public func makeIterator() -> Iterator { Iterator(array: self) }

    public struct Iterator: IteratorProtocol {
        fileprivate let array: GGUFArray
        private var index = 0
        private var offset = 0

        fileprivate init(array: GGUFArray) { self.array = array }

        public mutating func next() -> GGUFValue? {
            guard index < array.count else { return nil }
            defer { index += 1 }
            switch array.storage {
            case .values(let values):
                return values[index]
            case .encoded(let encoded):
                let (value, size) = GGUFArray.decode(type: encoded.elementType, at: offset, of: encoded)
                offset += size
                return value
            }
        }
    }

    public static func == (a: GGUFArray, b: GGUFArray) -> Bool {
        a.count == b.count && a.elementsEqual(b)
    }

    // MARK: Decoding

    /// The value of `type` at `offset` of `encoded` and the bytes it takes. The parser has
    /// checked every length against the file, so no read here can leave the elements' bytes.
    private static func decode(type: UInt32, at offset: Int, of encoded: Encoded) -> (GGUFValue, Int) {
        let bytes = encoded.bytes
        func load<T: FixedWidthInteger>(_: T.Type, at position: Int = offset) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
        }
        let size = size(of: type, at: offset, in: bytes)
        switch type {
        case 0: return (.uint8(load(UInt8.self)), size)
        case 1: return (.int8(load(Int8.self)), size)
        case 2: return (.uint16(load(UInt16.self)), size)
        case 3: return (.int16(load(Int16.self)), size)
        case 4: return (.uint32(load(UInt32.self)), size)
        case 5: return (.int32(load(Int32.self)), size)
        case 6: return (.float32(Float(bitPattern: load(UInt32.self))), size)
        case 7: return (.bool(load(UInt8.self) != 0), size)
        case 8:
            // Invalid UTF-8 repaired with U+FFFD, as the parser reads every other string.
            let text = UnsafeRawBufferPointer(rebasing: bytes[(offset + 8)..<(offset + size)])
            return (.string(String(decoding: text, as: UTF8.self)), size)
        case 9:
            let elements = Encoded(
                elementType: load(UInt32.self), bytes: UnsafeRawBufferPointer(rebasing: bytes[(offset + 12)..<(offset + size)]),
                owner: encoded.owner)
            return (.array(GGUFArray(encoded: elements, count: Int(load(UInt64.self, at: offset + 4)))), size)
        case 10: return (.uint64(load(UInt64.self)), size)
        case 11: return (.int64(load(Int64.self)), size)
        default: return (.float64(Double(bitPattern: load(UInt64.self))), size)
        }
    }

    /// The bytes the value of `type` at `offset` takes (a string's length, a nested array's
    /// header and elements).
    private static func size(of type: UInt32, at offset: Int, in bytes: UnsafeRawBufferPointer) -> Int {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8: return 8 + Int(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
        case 9:
            let elementType = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let count = Int(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self)))
            if elementType != 8, elementType != 9 { return 12 + count * size(of: elementType, at: 0, in: bytes) }
            var end = offset + 12
            for _ in 0..<count { end += size(of: elementType, at: end, in: bytes) }
            return end - offset
        default: return 8
        }
    }
}
