import Foundation
import PropertyBased
import Testing

@testable import ModelFormats

/// Writers and readers agree on arbitrary content: JSON values and safetensors files.
@Suite struct RoundTripPropertyTests {
    /// Strings of any Unicode scalars (control characters, quotes, astral planes included).
    static let text = Gen.unicodeScalar(in: "\u{0}"..."\u{D7FF}").map { Character($0) }.string(of: 0...12)

    @Test func jsonWriteThenReadIsTheSameValue() async {
        await propertyCheck(
            count: 300, input: Self.text.array(of: 0...6), Gen.double(in: -1e12...1e12).array(of: 0...6),
            Gen.int(in: Int.min...Int.max)
        ) { keys, numbers, integer in
            var object = JSONObject()
            for (i, key) in keys.enumerated() {
                object.updateValue(i < numbers.count ? .double(numbers[i]) : .string(key), forKey: key)
            }
            object.updateValue(.array([.int(integer), .bool(keys.isEmpty), .null, .string(keys.joined())]), forKey: "\u{1}list")
            let value = JSONValue.object(object)
            for indent in [0, 2] {
                let parsed = try? JSONValue.parse(Data(value.serialized(indent: indent).utf8), duplicateKeys: .useLast)
                #expect(parsed == value, "\(value.serialized(indent: 0))")
            }
        }
    }

    @Test func safetensorsWriteThenReadIsTheSameTensors() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-st-prop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        await propertyCheck(
            count: 100, input: Gen.int(in: 0...4).array(of: 0...3), Gen.float(in: -1e6...1e6).array(of: 0...64),
            Self.text
        ) { shape, pool, metadataValue in
            let count = shape.reduce(1, *)
            let values = (0..<count).map { pool.isEmpty ? Float($0) : pool[$0 % pool.count] }
            let url = folder.appendingPathComponent("\(UUID().uuidString).safetensors")
            do {
                try SafetensorsWriter.write(
                    tensors: [
                        .init(name: "t", shape: shape, floats: values),
                        .float16(name: "h", shape: [count], floats: values.map { max(-6e4, min(6e4, $0)) }),
                    ],
                    metadata: ["note": metadataValue], to: url)
                let file = try SafetensorsFile(url: url)
                #expect(file.shape(of: "t") == shape && file.metadata["note"] == metadataValue)
                #expect(try file.readFloats("t").map(\.bitPattern) == values.map(\.bitPattern))
                let halves = try file.readFloats("h")
                #expect(zip(halves, values).allSatisfy { abs($0 - max(-6e4, min(6e4, $1))) <= 1e-3 * max(1, abs($1)) })
            } catch {
                Issue.record("\(shape): \(error)")
            }
        }
    }
}
