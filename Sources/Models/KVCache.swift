import TensorCore

/// Keys and values of the tokens a sequence has seen so far, per layer, for incremental
/// decoding. Keys are stored after RoPE. One cache serves one sequence.
/// `@unchecked Sendable`: `count` and the buffers change as tokens are added, unlocked; one pass at
/// a time uses a cache, on its owner's thread (its parallel loops write disjoint rows).
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    /// `Hkv · D`.
    public let width: Int
    /// Tokens stored.
    public private(set) var count: Int = 0
    private(set) var capacity: Int = 0
    private var keys: [TensorStorage] = []
    private var values: [TensorStorage] = []

    public init(config: TransformerConfig, capacity: Int = 64) {
        layerCount = config.layerCount
        width = config.keyValueWidth
        reserve(capacity)
    }

    /// Ensures room for `total` tokens, keeping what is stored.
    public func reserve(_ total: Int) {
        guard total > capacity else { return }
        let newCapacity = max(total, capacity * 2)
        // Not zero-filled: attention reads only positions already written, and a generation that
        // stops early then never touches the rest of its budget (3.7 MB of the default model's peak).
        let fresh = (0..<layerCount).map { _ in TensorStorage(count: newCapacity * width, zeroed: false) }
        let freshValues = (0..<layerCount).map { _ in TensorStorage(count: newCapacity * width, zeroed: false) }
        for l in 0..<keys.count {
            fresh[l].pointer.update(from: keys[l].pointer, count: count * width)
            freshValues[l].pointer.update(from: values[l].pointer, count: count * width)
        }
        keys = fresh
        values = freshValues
        capacity = newCapacity
    }

    /// `[capacity, Hkv·D]` keys of a layer.
    func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys[layer].pointer }
    func values(layer: Int) -> UnsafeMutablePointer<Float> { values[layer].pointer }

    /// Marks `n` more tokens as stored (after every layer has written them).
    func advance(by n: Int) { count += n }

    /// Forgets tokens from `newCount` on (to re-run a suffix).
    public func truncate(to newCount: Int) {
        precondition(newCount >= 0 && newCount <= count, "cannot truncate \(count) to \(newCount)")
        count = newCount
    }
}
