import Foundation
import ModelFormats

/// The model stage: byte-pair encoding of one word into token ids.
///
/// One engine serves every BPE flavour. A merge table maps an adjacent pair of token ids to the
/// merged token and a priority; the word's lowest-priority pair is merged first, the leftmost among
/// equals, until no pair merges. That is HF tokenizers' `Word::merge_all` when priorities are merge
/// ranks (GPT-2 byte-level BPE, and tokenizer.json BPE with byte fallback), and llama.cpp's
/// `llm_tokenizer_spm` when priorities are the merged tokens' scores, best first (GGUF
/// `tokenizer.ggml.model = llama`, see ``init(spmScores:...)``).
///
/// The first symbols are the word's UTF-8 bytes spelled in the GPT-2 alphabet (byte level), or its
/// Unicode scalars, with `<0xNN>` byte tokens or the unknown token for scalars not in the
/// vocabulary.
struct BPEModel: Sendable {
    /// How a word becomes its first symbols.
    enum Symbols: Sendable {
        /// One symbol per UTF-8 byte: the id of the byte's GPT-2 spelling (-1 if absent).
        case bytes([Int32])
        /// One symbol per Unicode scalar, if the vocabulary has it; otherwise one `<0xNN>` token
        /// per byte (when `byteFallback` is set and has all of them), else `unknown` (consecutive
        /// unknowns fused into one when `fuseUnknown`), else nothing.
        case scalars([UInt32: Int32], byteFallback: [Int32]?, unknown: Int32?, fuseUnknown: Bool)
    }

    let symbols: Symbols
    /// Pair `(left << 32) | right` to `(priority << 32) | merged`.
    let merges: [UInt64: UInt64]
    /// Words found whole in the vocabulary are emitted as they are, unmerged (HF `ignore_merges`,
    /// llama.cpp's Llama 3 behaviour). Keys are vocabulary spellings.
    let wholeWords: VocabularyIndex?
    private let cache = WordCache()

    init(symbols: Symbols, merges: [UInt64: UInt64], wholeWords: VocabularyIndex? = nil) {
        self.symbols = symbols
        self.merges = merges
        self.wholeWords = wholeWords
    }

    @inline(__always)
    static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    static func mergeValue(priority: Int, merged: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: priority)) << 32
            | UInt64(UInt32(truncatingIfNeeded: merged))
    }

    /// Appends the ids of `word` to `ids`.
    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
        let cacheable = word.count <= 64
        var key = ""
        if cacheable || wholeWords != nil {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: word)
            key = String(view)
        }
        if cacheable, let cached = cache[key] {
            ids.append(contentsOf: cached.lazy.map { Int($0) })
            return
        }
        var result: [Int32]
        if let wholeWords, let id = wholeWords[exact: spelling(of: key)] {
            result = [id]
        } else {
            result = initialSymbols(word)
            if result.count > 1 {
                if result.count <= 32 {
                    mergeShort(&result)
                } else {
                    mergeLong(&result)
                }
            }
        }
        if cacheable {
            cache[key] = result
        }
        ids.append(contentsOf: result.lazy.map { Int($0) })
    }

    /// The vocabulary spelling of a word: GPT-2 alphabet for byte-level models.
    private func spelling(of word: String) -> String {
        if case .bytes = symbols {
            return ByteLevel.spell(word.utf8)
        }
        return word
    }

    private func initialSymbols(_ word: [Unicode.Scalar]) -> [Int32] {
        var result: [Int32] = []
        result.reserveCapacity(word.count)
        switch symbols {
        case .bytes(let byteIDs):
            var bytes: [UInt8] = []
            bytes.reserveCapacity(word.count)
            for scalar in word {
                appendUTF8(scalar, to: &bytes)
            }
            for byte in bytes where byteIDs[Int(byte)] >= 0 {
                result.append(byteIDs[Int(byte)])
            }
        case .scalars(let scalarIDs, let byteFallback, let unknown, let fuseUnknown):
            var lastWasUnknown = false
            for scalar in word {
                if let id = scalarIDs[scalar.value] {
                    result.append(id)
                    lastWasUnknown = false
                    continue
                }
                if let byteFallback {
                    var bytes: [UInt8] = []
                    appendUTF8(scalar, to: &bytes)
                    if bytes.allSatisfy({ byteFallback[Int($0)] >= 0 }) {
                        result.append(contentsOf: bytes.map { byteFallback[Int($0)] })
                        lastWasUnknown = false
                        continue
                    }
                }
                if let unknown {
                    if !(fuseUnknown && lastWasUnknown) {
                        result.append(unknown)
                    }
                    lastWasUnknown = true
                }
            }
        }
        return result
    }

    /// Merging by repeated scans: quadratic, but fastest for the short words that dominate.
    private func mergeShort(_ s: inout [Int32]) {
        while s.count > 1 {
            var bestPriority = UInt64.max
            var bestPosition = -1
            var bestMerged: Int32 = 0
            for i in 0..<(s.count - 1) {
                guard let value = merges[Self.pairKey(s[i], s[i + 1])] else { continue }
                let priority = value >> 32
                if priority < bestPriority {
                    bestPriority = priority
                    bestPosition = i
                    bestMerged = Int32(truncatingIfNeeded: value & 0xFFFF_FFFF)
                }
            }
            if bestPosition < 0 { break }
            s[bestPosition] = bestMerged
            s.remove(at: bestPosition + 1)
        }
    }

    /// Merging with a heap over a linked list: O(n log n) for long words (a whole SentencePiece
    /// line, a run of CJK letters or of spaces). Same order as ``mergeShort``: lowest priority,
    /// then leftmost (positions are original indices, so they keep left-to-right order).
    private func mergeLong(_ s: inout [Int32]) {
        let n = s.count
        var next = Array(1...n)
        next[n - 1] = -1
        var previous = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let value = merges[Self.pairKey(s[i], s[i + 1])] {
                heap.push(value & 0xFFFF_FFFF_0000_0000 | UInt64(i))
            }
        }
        while let top = heap.pop() {
            let position = Int(top & 0xFFFF_FFFF)
            let priority = top >> 32
            guard alive[position], next[position] >= 0 else { continue }
            let right = next[position]
            // An entry is stale when either symbol has changed since it was pushed.
            guard let value = merges[Self.pairKey(s[position], s[right])], value >> 32 == priority
            else {
                continue
            }
            s[position] = Int32(truncatingIfNeeded: value & 0xFFFF_FFFF)
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 {
                previous[next[right]] = position
            }
            let before = previous[position]
            if before >= 0, let merged = merges[Self.pairKey(s[before], s[position])] {
                heap.push(merged & 0xFFFF_FFFF_0000_0000 | UInt64(before))
            }
            let after = next[position]
            if after >= 0, let merged = merges[Self.pairKey(s[position], s[after])] {
                heap.push(merged & 0xFFFF_FFFF_0000_0000 | UInt64(position))
            }
        }
        var result: [Int32] = []
        var i = 0
        while i >= 0 {
            result.append(s[i])
            i = next[i]
        }
        s = result
    }
}

/// Appends the UTF-8 encoding of `scalar`.
@inline(__always)
func appendUTF8(_ scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
    let v = scalar.value
    switch v {
    case 0..<0x80:
        bytes.append(UInt8(v))
    case 0x80..<0x800:
        bytes.append(UInt8(0xC0 | (v >> 6)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    case 0x800..<0x10000:
        bytes.append(UInt8(0xE0 | (v >> 12)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    default:
        bytes.append(UInt8(0xF0 | (v >> 18)))
        bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    }
}

/// A binary min-heap of packed `(priority << 32) | position` keys.
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ item: UInt64) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent] <= items[child] { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                if left >= items.count { break }
                var smallest = left
                if left + 1 < items.count && items[left + 1] < items[left] { smallest = left + 1 }
                if items[parent] <= items[smallest] { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}

/// Ids of words already encoded. Text repeats its words, so this makes encoding a few times
/// faster; it is emptied when full rather than evicting, which keeps lookups cheap.
/// `@unchecked Sendable`: `storage` is touched only under `lock`.
final class WordCache: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [ExactString: [Int32]] = [:]
    private let capacity = 50_000

    subscript(key: String) -> [Int32]? {
        get {
            lock.lock()
            defer { lock.unlock() }
            return storage[exact: key]
        }
        set {
            lock.lock()
            defer { lock.unlock() }
            if storage.count >= capacity {
                storage.removeAll(keepingCapacity: true)
            }
            storage[exact: key] = newValue
        }
    }
}
