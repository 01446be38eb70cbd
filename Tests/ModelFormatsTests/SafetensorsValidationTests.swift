import Foundation
import ModelFormats
import TestSupport
import Testing

/// One malformed input per check the reader makes; each error must name the file and the problem.
@Suite struct SafetensorsValidationTests {
    /// A valid two-tensor header: "a" is F32 [2] at 0..<8, "b" is F32 [1] at 8..<12.
    private static let goodHeader =
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
        + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
    private static let goodData = float32Bytes([1, 2, 3])

    /// Writes `bytes` as a file, opens it and returns the error it throws.
    private func openError(_ bytes: [UInt8]) throws -> (SafetensorsError?, URL) {
        try withTemporaryDirectory { folder in
            let url = try writeFile(bytes, named: "bad.safetensors", in: folder)
            let error = #expect(throws: SafetensorsError.self) { try SafetensorsFile(url: url) }
            return (error, url)
        }
    }

    @Test func theGoodFileOpens() throws {
        try withTemporaryDirectory { folder in
            let url = try writeFile(
                safetensorsBytes(header: Self.goodHeader, data: Self.goodData),
                named: "good.safetensors", in: folder)
            let file = try SafetensorsFile(url: url)
            #expect(file.tensorNames == ["a", "b"])
            #expect(try file.readFloats("a") == [1, 2])
        }
    }

    @Test func fileShorterThanTheLengthField() throws {
        let (error, url) = try openError([1, 2, 3])
        #expect(error == .truncated(file: url.path, size: 3))
        expectNames(error, file: url, "3 bytes", "too short")
    }

    @Test func headerLengthBeyondFile() throws {
        let bytes = safetensorsBytes(
            header: Self.goodHeader, data: Self.goodData,
            headerLength: 10_000)
        let (error, url) = try openError(bytes)
        #expect(
            error
                == .headerLengthBeyondFile(
                    file: url.path, headerLength: 10_000,
                    fileSize: bytes.count))
        expectNames(error, file: url, "header length 10000", "beyond the end of the file")
    }

    @Test func headerIsNotJSON() throws {
        let (error, url) = try openError(safetensorsBytes(header: #"{"a": [1, 2"#))
        guard case .invalidHeader? = error else {
            Issue.record("expected invalidHeader, got \(String(describing: error))")
            return
        }
        expectNames(error, file: url, "invalid header", "not valid JSON")
    }

    @Test func headerIsNotAnObject() throws {
        let (error, url) = try openError(safetensorsBytes(header: "[1, 2, 3]"))
        expectNames(error, file: url, "invalid header", "expected a JSON object, found array")
    }

    /// The JSON parser keeps "é" and "e\u{301}" apart; the reader, which keys tensors by `String`,
    /// rejects them as it rejects an exact duplicate.
    @Test func duplicateTensorNames() throws {
        let exact =
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let (exactError, exactURL) = try openError(
            safetensorsBytes(header: exact, data: float32Bytes([1, 2])))
        expectNames(exactError, file: exactURL, "invalid header", "duplicate key 'a'")
        let equivalent =
            #"{"\u00e9":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""e\u0301":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let (error, url) = try openError(
            safetensorsBytes(header: equivalent, data: float32Bytes([1, 2])))
        expectNames(error, file: url, "invalid header", "duplicate tensor name")
    }

    @Test func tensorEntryWithoutShape() throws {
        let header = #"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#
        let (error, url) = try openError(safetensorsBytes(header: header, data: [0, 0, 0, 0]))
        expectNames(error, file: url, "tensor 'a'", "'shape'")
    }

    @Test func metadataValuesMustBeStrings() throws {
        let header = #"{"__metadata__":{"format":"pt","step":3}}"#
        let (error, url) = try openError(safetensorsBytes(header: header))
        expectNames(error, file: url, "__metadata__", "'step'", "must be a string")
    }

    @Test func unknownDType() throws {
        let header = #"{"q":{"dtype":"Q4_0","shape":[2],"data_offsets":[0,2]}}"#
        let (error, url) = try openError(safetensorsBytes(header: header, data: [0, 0]))
        #expect(error == .unknownDType(file: url.path, tensor: "q", dtype: "Q4_0"))
        expectNames(error, file: url, "'q'", "unknown dtype 'Q4_0'")
    }

    @Test func dataOffsetsOutOfBounds() throws {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#
        let (error, url) = try openError(
            safetensorsBytes(header: header, data: float32Bytes([1, 2])))
        #expect(
            error
                == .offsetsOutOfBounds(
                    file: url.path, tensor: "a", begin: 0, end: 12,
                    dataSize: 8))
        expectNames(error, file: url, "'a'", "[0, 12]", "out of bounds", "8 bytes")
    }

    @Test func dataOffsetsReversed() throws {
        let header = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#
        let (error, url) = try openError(safetensorsBytes(header: header, data: Self.goodData))
        expectNames(error, file: url, "'a'", "[8, 4]", "out of bounds")
    }

    @Test func sizeDoesNotMatchShapeAndDType() throws {
        // F16 [2, 3] needs 12 bytes; the offsets give 8.
        let header = #"{"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}}"#
        let (error, url) = try openError(
            safetensorsBytes(header: header, data: float32Bytes([1, 2])))
        #expect(
            error
                == .sizeMismatch(
                    file: url.path, tensor: "w", shape: [2, 3], dtype: "F16",
                    expectedBytes: 12, actualBytes: 8))
        expectNames(error, file: url, "'w'", "[2, 3]", "F16", "12 bytes", "span 8 bytes")
    }

    @Test func overlappingTensors() throws {
        let header =
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let (error, url) = try openError(safetensorsBytes(header: header, data: Self.goodData))
        #expect(error == .overlappingTensors(file: url.path, first: "a", second: "b"))
        expectNames(error, file: url, "'a'", "'b'", "overlapping")
    }

    @Test func holeBetweenTensors() throws {
        let header =
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let (error, url) = try openError(safetensorsBytes(header: header, data: Self.goodData))
        #expect(error == .uncoveredBytes(file: url.path, begin: 4, end: 8))
        expectNames(error, file: url, "4..<8", "belong to no tensor")
    }

    @Test func trailingBytesAfterTheLastTensor() throws {
        let (error, url) = try openError(
            safetensorsBytes(header: Self.goodHeader, data: Self.goodData + [0, 0, 0, 0]))
        #expect(error == .uncoveredBytes(file: url.path, begin: 12, end: 16))
    }

    @Test func missingFileNamesThePath() throws {
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("absent.safetensors")
            let error = #expect(throws: SafetensorsError.self) { try SafetensorsFile(url: url) }
            expectNames(error, file: url, "cannot open")
        }
    }

    // MARK: Sharded checkpoints

    /// A two-shard checkpoint: `a` in shard 1, `b` in shard 2, and the index text given.
    @discardableResult
    private func shardedFolder(index: String, in folder: URL) throws -> URL {
        try writeFile(
            safetensorsBytes(
                header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                data: float32Bytes([1, 2])),
            named: "model-00001-of-00002.safetensors", in: folder)
        try writeFile(
            safetensorsBytes(
                header: #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                data: float32Bytes([3])),
            named: "model-00002-of-00002.safetensors", in: folder)
        return try writeText(index, named: "model.safetensors.index.json", in: folder)
    }

    private static let shard1 = "model-00001-of-00002.safetensors"
    private static let shard2 = "model-00002-of-00002.safetensors"

    @Test func aValidShardedFolderOpens() throws {
        try withTemporaryDirectory { folder in
            let index =
                #"{"metadata":{"total_size":12},"weight_map":{"a":"\#(Self.shard1)","#
                + #""b":"\#(Self.shard2)"}}"#
            try shardedFolder(index: index, in: folder)
            let checkpoint = try SafetensorsCheckpoint(url: folder)
            #expect(checkpoint.tensorNames == ["a", "b"])
            #expect(try checkpoint.readFloats("b") == [3])
        }
    }

    @Test func tensorListedInIndexButAbsentFromShard() throws {
        try withTemporaryDirectory { folder in
            let index =
                #"{"weight_map":{"a":"\#(Self.shard1)","b":"\#(Self.shard2)","#
                + #""c":"\#(Self.shard2)"}}"#
            let indexURL = try shardedFolder(index: index, in: folder)
            let error = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: folder)
            }
            #expect(
                error
                    == .tensorMissingFromShard(
                        index: indexURL.path, tensor: "c",
                        shard: Self.shard2))
            expectNames(error, file: indexURL, "'c'", Self.shard2, "does not contain it")
        }
    }

    @Test func shardFileMissing() throws {
        try withTemporaryDirectory { folder in
            let index =
                #"{"weight_map":{"a":"\#(Self.shard1)","b":"\#(Self.shard2)","#
                + #""c":"model-00003-of-00003.safetensors"}}"#
            let indexURL = try shardedFolder(index: index, in: folder)
            let error = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: indexURL)
            }
            #expect(
                error
                    == .shardMissing(
                        index: indexURL.path,
                        shard: "model-00003-of-00003.safetensors"))
            expectNames(error, file: indexURL, "model-00003-of-00003.safetensors", "does not exist")
        }
    }

    @Test func shardTensorNotListedInIndex() throws {
        try withTemporaryDirectory { folder in
            let index = #"{"weight_map":{"a":"\#(Self.shard1)"}}"#
            // Shard 2 is never opened, so make shard 1 hold an unlisted tensor instead.
            try shardedFolder(index: index, in: folder)
            try writeFile(
                safetensorsBytes(
                    header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                        + #""extra":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                    data: float32Bytes([1, 2, 3])),
                named: Self.shard1, in: folder)
            let indexURL = folder.appendingPathComponent("model.safetensors.index.json")
            let error = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: folder)
            }
            #expect(
                error
                    == .tensorNotInIndex(
                        index: indexURL.path, tensor: "extra",
                        shard: Self.shard1))
            expectNames(error, file: indexURL, "'extra'", "does not list")
        }
    }

    @Test func tensorStoredInTwoShards() throws {
        try withTemporaryDirectory { folder in
            let index = #"{"weight_map":{"a":"\#(Self.shard1)","b":"\#(Self.shard2)"}}"#
            try shardedFolder(index: index, in: folder)
            try writeFile(
                safetensorsBytes(
                    header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                        + #""b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    data: float32Bytes([9, 3])),
                named: Self.shard2, in: folder)
            let indexURL = folder.appendingPathComponent("model.safetensors.index.json")
            let error = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: folder)
            }
            #expect(
                error
                    == .duplicateTensor(
                        index: indexURL.path, tensor: "a",
                        firstShard: Self.shard1, secondShard: Self.shard2))
        }
    }

    @Test func indexWithoutWeightMapOrWithEscapingPath() throws {
        try withTemporaryDirectory { folder in
            let indexURL = try shardedFolder(index: #"{"metadata":{}}"#, in: folder)
            let missing = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: indexURL)
            }
            expectNames(missing, file: indexURL, "invalid shard index", "weight_map")

            try writeText(
                #"{"weight_map":{"a":"../elsewhere.safetensors"}}"#,
                named: "model.safetensors.index.json", in: folder)
            let escaping = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: indexURL)
            }
            expectNames(escaping, file: indexURL, "../elsewhere.safetensors")

            try writeText("not json", named: "model.safetensors.index.json", in: folder)
            let invalid = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: indexURL)
            }
            expectNames(invalid, file: indexURL, "not valid JSON")
        }
    }

    @Test func shardErrorsNameTheShard() throws {
        try withTemporaryDirectory { folder in
            let index = #"{"weight_map":{"a":"\#(Self.shard1)","b":"\#(Self.shard2)"}}"#
            try shardedFolder(index: index, in: folder)
            let shard = try writeFile([0, 0], named: Self.shard2, in: folder)
            let error = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: folder)
            }
            #expect(error == .truncated(file: shard.path, size: 2))
        }
    }

    @Test func folderWithoutAnUnambiguousCheckpoint() throws {
        try withTemporaryDirectory { folder in
            let empty = #expect(throws: SafetensorsError.self) {
                try SafetensorsCheckpoint(url: folder)
            }
            expectNames(empty, file: folder, "no safetensors checkpoint")
        }
        // The dtypes fixture folder holds two files and no index.
        let fixtures = try fixtureURL("dtypes")
        let ambiguous = #expect(throws: SafetensorsError.self) {
            try SafetensorsCheckpoint(url: fixtures)
        }
        expectNames(
            ambiguous, file: fixtures, "2 .safetensors files", "no model.safetensors.index.json")
    }
}
