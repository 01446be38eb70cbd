import Foundation

/// A 64-byte aligned, heap-allocated buffer of `Float`s shared by tensors and their views.
///
/// Storage is a reference: views made with ``Tensor/slice(_:)`` or ``Tensor/reshaped(_:)``
/// alias it, so writing through one view is visible in the others (as in PyTorch). Use
/// ``Tensor/copy()`` for an independent tensor.
/// `@unchecked Sendable`: the floats behind `pointer` are unsynchronised; callers must not write
/// elements another thread reads or writes at the same time (parallel loops write disjoint ranges).
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// Allocates `count` floats, zero-filled unless `zeroed` is false (for buffers that are
    /// written in full before they are read: skipping the fill saves touching the memory twice).
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "negative tensor size \(count)")
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let status = posix_memalign(&raw, 64, bytes)
        precondition(status == 0 && raw != nil, "out of memory allocating \(bytes) bytes")
        if zeroed { memset(raw!, 0, bytes) }
        pointer = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
    }

    deinit { free(pointer) }
}

/// Reusable scratch storage for buffers that live for one call (a forward pass's activations):
/// a buffer given back is handed out again, so a stream of calls stops paying for fresh pages.
/// Buffers come back with their old contents; callers write them in full before reading.
/// `@unchecked Sendable`: `free` is touched only under `lock`.
public final class ScratchPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [TensorStorage] = []

    public init() {}

    /// A tensor of `shape` on pooled (uninitialised) storage.
    public func take(_ shape: [Int]) -> Tensor {
        let count = shape.reduce(1, *)
        lock.lock()
        let index = free.indices.filter { free[$0].count >= count }.min { free[$0].count < free[$1].count }
        let storage = index.map { free.remove(at: $0) }
        lock.unlock()
        return Tensor(shape: shape, storage: storage ?? TensorStorage(count: count, zeroed: false))
    }

    /// Returns tensors' storage to the pool (keeping at most 16 buffers).
    public func giveBack(_ tensors: Tensor...) {
        lock.lock()
        free.append(contentsOf: tensors.map(\.storage))
        if free.count > 16 { free.removeFirst(free.count - 16) }
        lock.unlock()
    }
}

/// A row-major, contiguous float32 tensor (or a contiguous view into one).
///
/// Shapes are written `[B, T, C]` with the last dimension contiguous. Linear weights are
/// always `[out, in]`, so a linear layer computes `y = x · Wᵀ`.
public struct Tensor: Sendable {
    public let shape: [Int]
    public let storage: TensorStorage
    /// Offset of the first element in `storage`, in floats.
    public let offset: Int

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }

    /// A new zero-filled tensor.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
        self.offset = 0
    }

    /// A new tensor whose elements are not initialised: for buffers written in full before
    /// they are read (weights being loaded), where zero-filling would touch the memory twice.
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *), zeroed: false)
        self.offset = 0
    }

    /// A new tensor holding `values` (row-major) with the given shape.
    public init(shape: [Int], values: [Float]) {
        precondition(
            shape.reduce(1, *) == values.count,
            "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { storage.pointer.update(from: base, count: values.count) }
        }
    }

    /// A view of existing storage.
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        precondition(
            offset >= 0 && offset + shape.reduce(1, *) <= storage.count,
            "view \(shape) at offset \(offset) exceeds storage of \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.offset = offset
    }

    /// Pointer to the first element. Valid while the tensor (or its storage) is alive.
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// The elements, row-major, as an array (a copy).
    public var scalars: [Float] { Array(buffer) }

    /// The same elements viewed with another shape (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage, offset: offset)
    }

    /// A view of index `i` along the first dimension (no copy).
    public func slice(_ i: Int) -> Tensor {
        precondition(rank >= 1 && i >= 0 && i < shape[0], "index \(i) out of range for \(shape)")
        let inner = Array(shape.dropFirst())
        let n = inner.reduce(1, *)
        return Tensor(shape: inner, storage: storage, offset: offset + i * n)
    }

    /// A view of rows `range` along the first dimension (no copy).
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(
            rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
            "rows \(range) out of range for \(shape)")
        let n = shape.dropFirst().reduce(1, *)
        return Tensor(
            shape: [range.count] + shape.dropFirst(), storage: storage,
            offset: offset + range.lowerBound * n)
    }

    /// An independent copy.
    public func copy() -> Tensor {
        let t = Tensor(zeros: shape)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    public subscript(_ i: Int) -> Float {
        get { pointer[i] }
        nonmutating set { pointer[i] = newValue }
    }
}
