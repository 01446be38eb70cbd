import Foundation
import PropertyBased
import Testing

@testable import Tokenizers

/// Byte-level BPE loses nothing: decoding the ids of any text gives the text back, scalar for
/// scalar (controls, combining marks, astral planes, invalid-looking mixes included), for every
/// character whose bytes all have a token. A byte the vocabulary lacks is dropped, as Hugging
/// Face `tokenizers` drops it: SmolLM2's lacks a few (control bytes such as 0x16, the lead bytes
/// 0xF1–0xF4 of planes 4–16), and those characters are left out of its texts.
@Suite struct TokenizerRoundTripPropertyTests {
    static let scalars = Gen.unicodeScalar(in: "\u{0}"..."\u{D7FF}").map { Character($0) }
    static let astral = Gen.unicodeScalar(in: "\u{E000}"..."\u{10FFFF}").map { Character($0) }
    static let ascii = Gen.unicodeScalar(in: "\u{20}"..."\u{7E}").map { Character($0) }

    @Test(arguments: ["smollm2", "bpe-llama3.tokenizer.json"])
    func encodeThenDecodeIsTheText(_ name: String) async throws {
        let tokenizer = name == "smollm2" ? try FixtureTokenizers.smolLM2.get() : try FixtureTokenizers.json(name)
        let missing = Set((0...255).map(UInt8.init).filter { tokenizer.id(of: ByteLevel.spell([$0])) == nil })
        #expect(name == "smollm2" ? missing.count < 32 : missing.isEmpty, "bytes without a token: \(missing.sorted())")
        await propertyCheck(
            count: 300, input: Self.scalars.string(of: 0...24), Self.astral.string(of: 0...4),
            Self.ascii.string(of: 0...24)
        ) { a, b, c in
            let text = String((a + b + c + a).filter { !$0.utf8.contains(where: missing.contains) })
            let decoded = tokenizer.decode(tokenizer.encode(text, addSpecialTokens: false), skipSpecialTokens: false)
            #expect(sameScalars(decoded, text), "\(text.unicodeScalars.map { String($0.value, radix: 16) })")
        }
    }
}
