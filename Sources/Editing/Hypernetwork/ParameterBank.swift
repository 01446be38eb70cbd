import Foundation
import TensorCore

/// The trainable parameters of a network in one flat buffer, each a named view into it, so
/// that an optimiser, a gradient-norm clip and a checkpoint each see a single tensor, and a
/// gradient with the same layout (``makeGradient()``) is addressed by the same names.
public final class ParameterBank: Sendable {
    /// A parameter's place in the buffer.
    public struct Slot: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    /// In the order they were declared (the order of the buffer and of files).
    public let slots: [Slot]
    /// All parameters, flat.
    public let values: Tensor
    private let index: [String: Int]

    /// A zero-filled bank of the given `(name, shape)` parameters.
    public init(_ layout: [(String, [Int])]) {
        var slots: [Slot] = []
        var offset = 0
        for (name, shape) in layout {
            slots.append(Slot(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        self.slots = slots
        values = Tensor(zeros: [offset])
        index = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($1.name, $0) })
        precondition(index.count == slots.count, "duplicate parameter names")
    }

    /// The number of floats.
    public var count: Int { values.count }

    /// The parameter `name` as a view of `buffer` (``values`` or a gradient of this layout).
    public func view(_ name: String, in buffer: Tensor) -> Tensor {
        guard let i = index[name] else { preconditionFailure("no parameter \(name)") }
        precondition(buffer.count == count, "a buffer of \(buffer.count) floats for a bank of \(count)")
        return Tensor(shape: slots[i].shape, storage: buffer.storage, offset: buffer.offset + slots[i].offset)
    }

    /// The parameter `name` (a view: writes change the bank).
    public subscript(_ name: String) -> Tensor { view(name, in: values) }

    /// A zero gradient with this bank's layout.
    public func makeGradient() -> Tensor { Tensor(zeros: [count]) }

    /// Fills `name` with N(0, std²) samples.
    public func fillNormal(_ name: String, std: Float, using rng: inout SplitMix64) {
        let t = self[name]
        for i in 0..<t.count { t.pointer[i] = std * rng.nextGaussian() }
    }

    /// Fills `name` with a constant.
    public func fill(_ name: String, _ value: Float) {
        let t = self[name]
        t.pointer.update(repeating: value, count: t.count)
    }
}

extension SplitMix64 {
    /// A standard-normal sample (Box–Muller on two uniforms).
    public mutating func nextGaussian() -> Float {
        let u1 = max(Double(next() >> 11) * 0x1p-53, 1e-300)
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
