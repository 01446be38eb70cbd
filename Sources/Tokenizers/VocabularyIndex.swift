import ModelFormats

/// Token ids by exact spelling (UTF-8 bytes, as ``ExactString`` compares them): what a
/// `[ExactString: Int32]` built from the same entries gives, a later entry replacing an earlier one
/// of the same spelling.
///
/// An open-addressing table of 4-byte entry numbers over the spellings the tokenizer keeps anyway,
/// instead of a dictionary that stores a 16-byte string and its id per bucket (by the slot sizes,
/// 0.3 MB against 1.3 MB for SmolLM2's 49,152 tokens; measured on the cold peak: 0.3–0.8 MB on
/// SmolLM2, 11 MB on Gemma 3, Docs/quantized.md). When the
/// spellings are the token array itself (GGUF vocabularies), the two share one buffer.
package struct VocabularyIndex: Sendable {
    /// Entry `i` spells `spellings[i]` and has the id `ids?[i] ?? i`.
    private let spellings: [String]
    private let ids: [Int32]?
    /// Entry numbers, -1 for an empty slot; probed linearly from the spelling's hash.
    private let slots: [Int32]
    /// The number of distinct spellings.
    package let count: Int

    /// Each non-empty token spelled at its own id (a later id wins over an earlier one).
    package init(tokens: [String]) {
        self.init(spellings: tokens, ids: nil)
    }

    /// `entries` in order, as successive dictionary assignments.
    package init(entries: [(String, Int32)]) {
        self.init(spellings: entries.map(\.0), ids: entries.map(\.1))
    }

    private init(spellings: [String], ids: [Int32]?) {
        self.spellings = spellings
        self.ids = ids
        // A load factor of at most 2/3 keeps linear probing to a few slots per lookup.
        var slots = [Int32](repeating: -1, count: max(1, spellings.count + spellings.count / 2 + 1))
        var count = 0
        for (entry, spelling) in spellings.enumerated() where !spelling.isEmpty {
            var slot = Self.home(of: spelling, in: slots.count)
            while slots[slot] >= 0, ExactString(spellings[Int(slots[slot])]) != ExactString(spelling) {
                slot = slot + 1 == slots.count ? 0 : slot + 1
            }
            if slots[slot] < 0 { count += 1 }
            slots[slot] = Int32(entry)
        }
        self.slots = slots
        self.count = count
    }

    private static func home(of spelling: String, in slotCount: Int) -> Int {
        // Lemire's multiply-shift: a hash onto 0..<slotCount without a power-of-two table.
        let hash = UInt64(UInt(bitPattern: ExactString(spelling).hashValue))
        return Int(hash.multipliedFullWidth(by: UInt64(slotCount)).high)
    }

    /// The id of the token spelled exactly `spelling`, if any.
    package subscript(exact spelling: String) -> Int32? {
        guard !spelling.isEmpty else { return nil }
        var slot = Self.home(of: spelling, in: slots.count)
        while slots[slot] >= 0 {
            let entry = Int(slots[slot])
            if ExactString(spellings[entry]) == ExactString(spelling) { return ids?[entry] ?? Int32(entry) }
            slot = slot + 1 == slots.count ? 0 : slot + 1
        }
        return nil
    }

    /// Every distinct spelling with its id, in no particular order.
    package var pairs: [(spelling: String, id: Int32)] {
        slots.lazy.filter { $0 >= 0 }.map { (spellings[Int($0)], self.ids?[Int($0)] ?? $0) }
    }
}
