import Foundation
import ModelFormats
import TestSupport
import Testing

/// `Fixtures/dtypes/expected.json`, written by Scripts/golden/make_tiny_models.py.
private struct DTypeExpectations: Decodable {
    struct Tensor: Decodable {
        let dtype: String
        let shape: [Int]
        let float32_bits: [UInt32]?
    }
    let files: [String: [String: Tensor]]
}

/// `Fixtures/sharded/expected.json`, written by Scripts/golden/make_tiny_models.py.
private struct ShardExpectations: Decodable {
    struct Tensor: Decodable {
        let shard: String
        let dtype: String
        let shape: [Int]
        let first: [Float]
        let sum: Double
    }
    let tensors: [String: Tensor]
}

@Suite struct SafetensorsReaderTests {
    private func dtypeExpectations() throws -> DTypeExpectations {
        let data = try Data(contentsOf: try fixtureURL("dtypes/expected.json"))
        return try JSONDecoder().decode(DTypeExpectations.self, from: data)
    }

    @Test(
        "F16 and BF16 tensors convert bit-exactly",
        arguments: ["f16.safetensors", "bf16.safetensors"])
    func halfPrecisionFixtures(fileName: String) throws {
        let expected = try #require(try dtypeExpectations().files[fileName])
        let file = try SafetensorsFile(url: try fixtureURL("dtypes/\(fileName)"))
        #expect(Set(file.tensorNames) == Set(expected.keys))
        #expect(file.metadata["format"] == "pt")
        for (name, tensor) in expected {
            #expect(file.shape(of: name) == tensor.shape, "\(name)")
            #expect(file.typeName(of: name) == tensor.dtype, "\(name)")
            guard let bits = tensor.float32_bits else { continue }
            let values = try file.readFloats(name)
            #expect(values.map(\.bitPattern) == bits, "\(name)")
        }
    }

    @Test func edgeValuesAreTheExpectedNumbers() throws {
        let f16 = try SafetensorsFile(url: try fixtureURL("dtypes/f16.safetensors"))
        #expect(try f16.readFloats("edge") == [1, -2, 0.5, 65504, 0x1p-14, 0x1p-24])
        let specials = try f16.readFloats("specials")
        #expect(specials[0] == .infinity && specials[1] == -.infinity)
        #expect(specials[2] == 0 && specials[2].sign == .minus && specials[3].isNaN)
        let bf16 = try SafetensorsFile(url: try fixtureURL("dtypes/bf16.safetensors"))
        let edge = try bf16.readFloats("edge")
        #expect(Array(edge[0..<3]) == [1, -2, 3.140625])
        #expect(edge[4] == 0x1p-126 && edge[5] == 0x1p-133)
    }

    @Test func otherDTypesAreListedButNotConverted() throws {
        let url = try fixtureURL("dtypes/bf16.safetensors")
        let file = try SafetensorsFile(url: url)
        #expect(file.typeName(of: "position_ids") == "I64")
        #expect(file.shape(of: "position_ids") == [1, 4])
        let error = #expect(throws: SafetensorsError.self) { try file.readFloats("position_ids") }
        expectNames(error, file: url, "position_ids", "I64")
        // The raw bytes are still there for callers that know the type.
        let raw = try file.withRawBytes(of: "position_ids") { Array($0) }
        #expect(raw.count == 32 && raw[8] == 1 && raw[24] == 3)
    }

    @Test func readFloatsChecksNameAndDestinationSize() throws {
        let url = try fixtureURL("dtypes/f16.safetensors")
        let file = try SafetensorsFile(url: url)
        let missing = #expect(throws: SafetensorsError.self) { try file.readFloats("nope") }
        expectNames(missing, file: url, "no tensor named 'nope'")
        var tooSmall = [Float](repeating: 0, count: 5)
        let error = #expect(throws: SafetensorsError.self) {
            try tooSmall.withUnsafeMutableBufferPointer { try file.readFloats("edge", into: $0) }
        }
        expectNames(error, file: url, "'edge'", "6 elements", "holds 5")
    }

    @Test("a sharded checkpoint opens from its folder or its index", arguments: [false, true])
    func shardedCheckpoint(openIndex: Bool) throws {
        let folder = try fixtureURL("sharded")
        let expected = try JSONDecoder().decode(
            ShardExpectations.self,
            from: Data(contentsOf: folder.appendingPathComponent("expected.json"))
        ).tensors
        let url = openIndex ? folder.appendingPathComponent("model.safetensors.index.json") : folder
        let checkpoint = try SafetensorsCheckpoint(url: url)
        #expect(checkpoint.url == url)
        #expect(checkpoint.indexURL?.lastPathComponent == "model.safetensors.index.json")
        #expect(
            checkpoint.shards.map(\.url.lastPathComponent)
                == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(Set(checkpoint.tensorNames) == Set(expected.keys))
        #expect(checkpoint.tensorNames.count == expected.count)
        // File order: shard by shard.
        #expect(checkpoint.tensorNames == checkpoint.shards.flatMap(\.tensorNames))

        var totalBytes = 0
        for (name, tensor) in expected {
            #expect(checkpoint.file(containing: name)?.url.lastPathComponent == tensor.shard)
            #expect(checkpoint.shape(of: name) == tensor.shape)
            #expect(checkpoint.typeName(of: name) == tensor.dtype)
            let count = tensor.shape.reduce(1, *)
            var values = [Float](repeating: .nan, count: count)
            try values.withUnsafeMutableBufferPointer { try checkpoint.readFloats(name, into: $0) }
            #expect(Array(values.prefix(4)) == tensor.first, "\(name)")
            let sum = values.reduce(0.0) { $0 + Double($1) }
            #expect(abs(sum - tensor.sum) <= 1e-9 * max(1, abs(tensor.sum)), "\(name)")
            totalBytes += count * 4
        }
        #expect(checkpoint.indexMetadata["total_size"] == .int(totalBytes))
        #expect(checkpoint.shape(of: "nope") == nil && checkpoint.info(of: "nope") == nil)
    }

    @Test func singleFileCheckpointOpensFromFileOrFolder() throws {
        try withTemporaryDirectory { folder in
            let source = try fixtureURL("dtypes/f16.safetensors")
            let single = folder.appendingPathComponent("model.safetensors")
            try FileManager.default.copyItem(at: source, to: single)
            for url in [folder, single] {
                let checkpoint = try SafetensorsCheckpoint(url: url)
                #expect(checkpoint.indexURL == nil && checkpoint.shards.count == 1)
                #expect(checkpoint.tensorNames == checkpoint.shards[0].tensorNames)
                #expect(try checkpoint.readFloats("edge") == [1, -2, 0.5, 65504, 0x1p-14, 0x1p-24])
            }
            // A folder whose only safetensors file has another name works too.
            try FileManager.default.moveItem(
                at: single, to: folder.appendingPathComponent("weights.safetensors"))
            #expect(try SafetensorsCheckpoint(url: folder).tensorNames.count == 3)
        }
    }

    @Test func tensorNamesFollowDataOrderNotHeaderOrder() throws {
        try withTemporaryDirectory { folder in
            let header =
                #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"#
                + #""a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"#
                + #""c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
            let url = try writeFile(
                safetensorsBytes(header: header, data: float32Bytes([3, 1, 2])),
                named: "order.safetensors", in: folder)
            let file = try SafetensorsFile(url: url)
            #expect(file.tensorNames == ["c", "b", "a"])
            #expect(try file.readFloats("a") == [2])
            #expect(file.metadata.isEmpty)
        }
    }

    @Test func unalignedDataIsReadCorrectly() throws {
        // The F32 tensor starts 2 bytes after the F16 one and the header length is odd, so
        // neither read may assume alignment.
        try withTemporaryDirectory { folder in
            let header =
                #"{"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"#
                + #""f":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}"# + " "
            let data = [UInt8(0x00), 0x3C] + float32Bytes([1.5, -7.25])
            let url = try writeFile(
                safetensorsBytes(header: header, data: data),
                named: "unaligned.safetensors", in: folder)
            let file = try SafetensorsFile(url: url)
            #expect(try file.readFloats("h") == [1])
            #expect(try file.readFloats("f") == [1.5, -7.25])
        }
    }

    @Test func scalarsAndEmptyTensors() throws {
        try withTemporaryDirectory { folder in
            let header =
                #"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"#
                + #""e":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]}}"#
            let url = try writeFile(
                safetensorsBytes(header: header, data: float32Bytes([42])),
                named: "scalar.safetensors", in: folder)
            let file = try SafetensorsFile(url: url)
            #expect(try file.readFloats("s") == [42])
            #expect(try file.readFloats("e") == [])
            #expect(file.shape(of: "e") == [0, 3])
        }
    }
}
