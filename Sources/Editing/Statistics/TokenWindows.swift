import TensorCore

/// The token windows statistics are collected over, cut from tokenised documents.
public enum TokenWindows {
    /// How windows are chosen, recorded in every statistics key.
    public static func scheme(seed: UInt64) -> String {
        "documents cut into windows, windows shuffled (Fisher-Yates, SplitMix64 seed \(seed)), last window shortened"
    }

    /// Tokenises `documents` (in parallel) and picks windows of at most `maxLength` tokens.
    ///
    /// Each document is cut into consecutive windows (its last one shorter; nothing is padded,
    /// the forward pass takes ragged batches). All windows of the corpus are shuffled with
    /// `seed`, so a sample mixes many documents and its order does not depend on `samples`:
    /// a smaller sample is a prefix of a larger one. Windows are then kept until `samples`
    /// tokens, the last one shortened to reach the count exactly (the forward pass is causal,
    /// so shortening a window does not change the keys of the tokens kept).
    ///
    /// - Parameter samples: tokens wanted; nil for the whole corpus.
    public static func make(
        documents: [String], maxLength: Int, samples: Int?, seed: UInt64, encode: (String) -> [Int]
    ) -> [[Int]] {
        precondition(maxLength > 0, "window length \(maxLength)")
        var tokenised = [[Int]](repeating: [], count: documents.count)
        tokenised.withUnsafeMutableBufferPointer { out in
            parallelFor(documents.count, dynamic: true) { i in out[i] = encode(documents[i]) }
        }
        var windows = tokenised.flatMap { cut($0, maxLength: maxLength) }
        shuffle(&windows, seed: seed)
        return take(windows, samples: samples)
    }

    /// Consecutive windows of at most `maxLength` tokens.
    static func cut(_ tokens: [Int], maxLength: Int) -> [[Int]] {
        stride(from: 0, to: tokens.count, by: maxLength).map { Array(tokens[$0..<min($0 + maxLength, tokens.count)]) }
    }

    /// Fisher–Yates with SplitMix64, written out so that the order never depends on the
    /// standard library's shuffle algorithm.
    static func shuffle<T>(_ items: inout [T], seed: UInt64) {
        var random = SplitMix64(seed: seed)
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(i, Int(random.next() % UInt64(i + 1)))
        }
    }

    /// The first windows holding `samples` tokens, the last one shortened.
    static func take(_ windows: [[Int]], samples: Int?) -> [[Int]] {
        guard var left = samples else { return windows }
        var kept: [[Int]] = []
        for window in windows where left > 0 {
            kept.append(Array(window.prefix(left)))
            left -= kept[kept.count - 1].count
        }
        return kept
    }

    /// Consecutive groups of windows of at most `tokens` tokens each (a longer window alone).
    public static func batches(_ windows: [[Int]], tokens: Int) -> [[[Int]]] {
        var batches: [[[Int]]] = []
        var current: [[Int]] = []
        var count = 0
        for window in windows {
            if !current.isEmpty && count + window.count > tokens {
                batches.append(current)
                current = []
                count = 0
            }
            current.append(window)
            count += window.count
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}
