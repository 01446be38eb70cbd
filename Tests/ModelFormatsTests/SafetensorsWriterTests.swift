import Foundation
import TensorCore
import TestSupport
import Testing

@testable import ModelFormats

@Suite struct SafetensorsWriterTests {
    private static let entries: [SafetensorsWriter.Entry] = [
        .float16(name: "half", shape: [3], floats: [1, -0.5, 65504]),
        SafetensorsWriter.Entry(name: "weight", shape: [2, 3], floats: [1, 2, 3, -4, 5.5, .pi]),
        .bfloat16(name: "brain", shape: [2], floats: [3.140625, -2]),
        SafetensorsWriter.Entry(
            name: "ids", shape: [2], dtype: .i64,
            bytes: [7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]),
        SafetensorsWriter.Entry(name: "scalar", shape: [], floats: [0.25]),
        SafetensorsWriter.Entry(name: "empty", shape: [0, 4], floats: []),
        SafetensorsWriter.Entry(name: "name with \"quotes\"\n/ünïcode", shape: [1], floats: [-0.0]),
    ]

    private static let metadata = [
        "format": "pt", "note": "line one\nline \"two\"\t\u{1}", "ünïcode": "✓",
    ]

    @Test func roundTripPreservesValuesShapesTypesAndMetadata() throws {
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("delta.safetensors")
            try SafetensorsWriter.write(tensors: Self.entries, metadata: Self.metadata, to: url)
            let file = try SafetensorsFile(url: url)
            #expect(file.metadata == Self.metadata)
            #expect(Set(file.tensorNames) == Set(Self.entries.map(\.name)))
            for entry in Self.entries {
                #expect(file.shape(of: entry.name) == entry.shape, "\(entry.name)")
                #expect(file.typeName(of: entry.name) == entry.dtype.rawValue, "\(entry.name)")
            }
            #expect(
                try file.readFloats("weight").map(\.bitPattern)
                    == [1, 2, 3, -4, 5.5, Float.pi].map(\.bitPattern))
            #expect(try file.readFloats("half") == [1, -0.5, 65504])
            #expect(try file.readFloats("brain") == [3.140625, -2])
            #expect(try file.readFloats("scalar") == [0.25])
            #expect(try file.readFloats("empty") == [])
            let negativeZero = try file.readFloats("name with \"quotes\"\n/ünïcode")
            #expect(negativeZero.map(\.bitPattern) == [Float(-0.0).bitPattern])
            #expect(try file.withRawBytes(of: "ids") { Array($0) } == Self.entries[3].payloadBytes)
        }
    }

    @Test func layoutKeepsEveryTensorAlignedToItsElementSize() throws {
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("aligned.safetensors")
            try SafetensorsWriter.write(tensors: Self.entries, to: url)
            let bytes = try Data(contentsOf: url)
            let headerLength = bytes.prefix(8).enumerated()
                .reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
            #expect(headerLength % 8 == 0)
            let file = try SafetensorsFile(url: url)
            // Largest elements first, caller's order kept among equals.
            #expect(
                file.tensorNames == [
                    "ids", "weight", "scalar", "empty", "name with \"quotes\"\n/ünïcode", "half",
                    "brain",
                ])
            for name in file.tensorNames {
                let info = try #require(file.info(of: name))
                #expect(info.dataOffsets.lowerBound % info.dtype.byteSize == 0, "\(name)")
            }
        }
    }

    @Test func largeHalfPrecisionTensorsConvertAcrossParallelChunks() throws {
        // More than one 65 536-element chunk, and not a multiple of it.
        let count = 200_003
        let values = (0..<count).map { Float($0 % 256) - 128 }  // exact in F16 and BF16
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("large.safetensors")
            try SafetensorsWriter.write(
                tensors: [
                    .bfloat16(name: "b", shape: [count], floats: values),
                    .float16(name: "h", shape: [count], floats: values),
                ], to: url)
            let checkpoint = try SafetensorsCheckpoint(url: url)
            #expect(try checkpoint.readFloats("b") == values)
            #expect(try checkpoint.readFloats("h") == values)
        }
    }

    @Test func rejectsInvalidTensorsBeforeWritingAnything() throws {
        let bad: [(SafetensorsWriter.Entry, String)] = [
            (
                SafetensorsWriter.Entry(name: "w", shape: [2, 2], floats: [1, 2, 3]),
                "needs 16 bytes, got 12"
            ),
            (SafetensorsWriter.Entry(name: "w", shape: [-1], floats: []), "negative dimension"),
            (SafetensorsWriter.Entry(name: "__metadata__", shape: [1], floats: [1]), "reserved"),
            (SafetensorsWriter.Entry(name: "", shape: [1], floats: [1]), "empty name"),
        ]
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("bad.safetensors")
            for (entry, fragment) in bad {
                let error = #expect(throws: SafetensorsError.self) {
                    try SafetensorsWriter.write(tensors: [entry], to: url)
                }
                expectNames(error, file: url, "cannot write tensor", fragment)
            }
            let duplicate = #expect(throws: SafetensorsError.self) {
                try SafetensorsWriter.write(
                    tensors: [
                        SafetensorsWriter.Entry(name: "w", shape: [1], floats: [1]),
                        SafetensorsWriter.Entry(name: "w", shape: [1], floats: [2]),
                    ], to: url)
            }
            expectNames(duplicate, file: url, "'w'", "duplicate name")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            #expect(leftovers.isEmpty)
        }
    }

    @Test func destinationIsReplacedOnlyByACompleteFile() throws {
        struct SimulatedCrash: Error {}
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("model.safetensors")
            let old = [SafetensorsWriter.Entry(name: "w", shape: [2], floats: [1, 2])]
            let new = [SafetensorsWriter.Entry(name: "w", shape: [3], floats: [7, 8, 9])]
            try SafetensorsWriter.write(tensors: old, to: url)
            let oldBytes = try Data(contentsOf: url)

            // Fail after the temporary file is complete but before the rename.
            var sawCompleteTemporary = false
            #expect(throws: SimulatedCrash.self) {
                try SafetensorsWriter.write(tensors: new, metadata: [:], to: url) {
                    // The destination still holds the old file, whole.
                    #expect(try Data(contentsOf: url) == oldBytes)
                    let others = try FileManager.default.contentsOfDirectory(atPath: folder.path)
                        .filter { $0 != "model.safetensors" }
                    #expect(others.count == 1)
                    if let temporary = others.first {
                        #expect(temporary.hasPrefix(".model.safetensors."))
                        let written = try SafetensorsFile(
                            url: folder.appendingPathComponent(temporary))
                        sawCompleteTemporary = try written.readFloats("w") == [7, 8, 9]
                    }
                    throw SimulatedCrash()
                }
            }
            #expect(sawCompleteTemporary)
            #expect(try Data(contentsOf: url) == oldBytes)
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: folder.path)
                    == ["model.safetensors"])

            // A write that succeeds replaces the file.
            try SafetensorsWriter.write(tensors: new, to: url)
            #expect(try SafetensorsFile(url: url).readFloats("w") == [7, 8, 9])
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: folder.path)
                    == ["model.safetensors"])
        }
    }

    @Test func writeIntoMissingFolderFailsWithThePath() throws {
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("no/such/dir/x.safetensors")
            let error = #expect(throws: SafetensorsError.self) {
                try SafetensorsWriter.write(tensors: [], to: url)
            }
            expectNames(error, file: url, "write failed")
        }
    }

    @Test func emptyCheckpointIsValid() throws {
        try withTemporaryDirectory { folder in
            let url = folder.appendingPathComponent("empty.safetensors")
            try SafetensorsWriter.write(tensors: [], to: url)
            #expect(try SafetensorsFile(url: url).tensorNames.isEmpty)
        }
    }
}

extension SafetensorsWriter.Entry {
    /// The raw payload as bytes, for comparisons.
    fileprivate var payloadBytes: [UInt8] {
        switch payload {
        case .bytes(let bytes): bytes
        case .floats(let values): float32Bytes(values)
        }
    }
}
