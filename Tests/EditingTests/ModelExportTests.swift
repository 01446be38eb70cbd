import Foundation
import ModelFormats
import Models
import Testing

@testable import Editing

/// Edited tiny models exported as GGUF and as Hugging Face folders, reloaded, and compared with
/// the edited model in memory.
@Suite struct ModelExportTests {
    typealias Support = ExportTestSupport
    static let tinyGGUF = TestModels.fixtures.appendingPathComponent("tiny-llama.gguf")

    @Test func ggufExportRewritesOnlyTheEditedTensorsAndReproducesTheModel() throws {
        let sourceHash = try SHA256.hex(file: Self.tinyGGUF)
        let model = try LanguageModel.load(Self.tinyGGUF)
        _ = try Support.edit(model)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edited.gguf")
            let result = try ModelExport.write(model, to: out)
            // q/k/v and gate/up are fused in memory; the parts not edited (layer 0's Q8_0 attn_v,
            // layer 1's F16 ffn_gate) keep their bytes.
            #expect(
                Set(result.rewrittenTensors) == [
                    "blk.0.ffn_down.weight", "blk.1.attn_q.weight", "blk.0.attn_k.weight",
                    "blk.1.attn_v.weight", "blk.0.ffn_gate.weight", "blk.1.ffn_up.weight",
                ])
            let source = try GGUFFile(url: Self.tinyGGUF)
            let copy = try GGUFFile(url: out)
            #expect(copy.version == source.version && copy.alignment == source.alignment)
            #expect(copy.metadataKeys == source.metadataKeys + ["ibke.export"])
            #expect(copy.metadata.filter { $0.key != "ibke.export" } == source.metadata)
            #expect(copy.tensorNames == source.tensorNames)
            var quantizedCopies = 0
            for name in source.tensorNames {
                let before = source.tensorInfo(name)!
                let after = copy.tensorInfo(name)!
                #expect(after.dimensions == before.dimensions, "\(name)")
                if result.rewrittenTensors.contains(name) {
                    #expect(after.type == .f32, "\(name)")
                } else {
                    #expect(after.type == before.type, "\(name)")
                    #expect(copy.rawBytes(of: name)!.elementsEqual(source.rawBytes(of: name)!), "\(name)")
                    if before.type == .q8_0 { quantizedCopies += 1 }
                }
            }
            #expect(quantizedCopies == 4)
            let reloaded = try LanguageModel.load(out)
            #expect(try Support.worstDifference(reloaded, model) <= 1e-5)
        }
        #expect(try SHA256.hex(file: Self.tinyGGUF) == sourceHash, "the source was modified")
    }

    @Test func ggufExportInF16StoresTheEditedTensorsAsF16() throws {
        let model = try LanguageModel.load(Self.tinyGGUF)
        _ = try Support.edit(model)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edited-f16.gguf")
            let result = try ModelExport.write(model, to: out, precision: .f16)
            let copy = try GGUFFile(url: out)
            for name in result.rewrittenTensors { #expect(copy.tensorInfo(name)?.type == .f16, "\(name)") }
            #expect(try Support.worstDifference(LanguageModel.load(out), model) <= 1e-2)
        }
    }

    /// The source's bytes with one metadata string added, which marks the file as an export
    /// (what `overwrite` may replace); the data section is the source's byte for byte.
    @Test func requantizedExportStoresTheEditedTensorsInTheirSourceTypes() throws {
        let model = try LanguageModel.load(Self.tinyGGUF)
        _ = try Support.edit(model)
        let source = try GGUFFile(url: Self.tinyGGUF)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edited.gguf")
            let result = try ModelExport.write(model, to: out, precision: .source)
            #expect(result.rewrittenTensors.count == 6)
            let copy = try GGUFFile(url: out)
            let edited = Dictionary(uniqueKeysWithValues: model.transformer.checkpointTensors(.gguf).map { ($0.name, $0.values()) })
            var quantized = 0
            for name in result.rewrittenTensors {
                let type = source.tensorInfo(name)!.type
                #expect(copy.tensorInfo(name)!.type == type, "\(name)")
                if let bytes = Quantize.quantize(edited[name]!, as: type) {
                    #expect(copy.rawBytes(of: name)!.elementsEqual(bytes), "\(name)")
                    quantized += 1
                }
            }
            #expect(quantized == 4)  // the Q8_0 ones; attn_k (layer 0) and attn_v (layer 1) are F16
            // Q8_0 and F16 rounding move the logits a little, not much.
            #expect(try Support.worstDifference(try LanguageModel.load(out), model) <= 0.05)
            #expect(throws: ExportError.self) { try ModelExport.write(model, to: folder.appendingPathComponent("hf"), precision: .source) }
        }
        #expect(throws: ExportError.self) {
            try ModelExport.requantized([Float](repeating: 0, count: 256), as: .q4_K, tensor: "blk.0.ffn_down.weight", file: "m.gguf")
        }
    }

    @Test func anUneditedGGUFExportIsTheSourceByteForByte() throws {
        let model = try LanguageModel.load(Self.tinyGGUF)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("copy.gguf")
            #expect(try ModelExport.write(model, to: out).rewrittenTensors.isEmpty)
            let source = try GGUFFile(url: Self.tinyGGUF)
            let copy = try GGUFFile(url: out)
            #expect(copy.metadataKeys == source.metadataKeys + ["ibke.export"])
            let sourceBytes = try Data(contentsOf: Self.tinyGGUF)
            let copyBytes = try Data(contentsOf: out)
            #expect(copyBytes.suffix(from: copy.dataOffset) == sourceBytes.suffix(from: source.dataOffset))
            // Written again from the copy, nothing changes: the marker is not added twice.
            let model2 = try LanguageModel.load(out)
            let again = folder.appendingPathComponent("again.gguf")
            try ModelExport.write(model2, to: again)
            #expect(try Data(contentsOf: again) == copyBytes)
        }
    }

    @Test(arguments: ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma3", "tiny-llama.gguf"])
    func huggingFaceExportReproducesTheEditedModel(_ name: String) throws {
        let source = TestModels.fixtures.appendingPathComponent(name)
        let model = try LanguageModel.load(source)
        _ = try Support.edit(model)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edited")
            let result = try ModelExport.write(model, to: out)
            #expect(result.format == .huggingFace)
            let reloaded = try LanguageModel.load(out)
            #expect(reloaded.config == model.config || model.format == .gguf, "\(reloaded.config)")
            #expect(try Support.worstDifference(reloaded, model) <= 1e-5)
            Support.expectSameTokenizer(reloaded, model)
            if model.format == .huggingFace {
                for file in ModelExport.huggingFaceSideFiles {
                    let original = source.appendingPathComponent(file)
                    guard FileManager.default.fileExists(atPath: original.path) else { continue }
                    #expect(try Data(contentsOf: out.appendingPathComponent(file)) == Data(contentsOf: original), "\(file)")
                }
                #expect(Set(reloaded.source.tensorNames) == Set(model.source.tensorNames))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["edited"], "temporary files left")
        }
    }

    @Test func huggingFaceExportInF16() throws {
        let model = try LanguageModel.load(TestModels.fixtures.appendingPathComponent("tiny-qwen2"))
        _ = try Support.edit(model)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("edited-f16")
            try ModelExport.write(model, to: out, precision: .f16)
            let reloaded = try LanguageModel.load(out)
            #expect(Set(reloaded.source.tensorNames.map { reloaded.source.typeName(of: $0) }) == ["F16"])
            let worst = try Support.worstDifference(reloaded, model)
            #expect(worst <= 5e-2, "\(worst)")  // every weight rounded, not just the edited ones
        }
    }

    /// `overwrite` replaces an earlier export only: never the source, a folder holding it, or a
    /// file or folder of the user's.
    @Test func overwritingReplacesOnlyEarlierExports() throws {
        try Support.withFolder { folder throws in
            // The source model inside the destination folder, beside a file of the user's.
            let home = folder.appendingPathComponent("models")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: false)
            let source = home.appendingPathComponent("tiny.gguf")
            try FileManager.default.copyItem(at: Self.tinyGGUF, to: source)
            try Data("notes".utf8).write(to: home.appendingPathComponent("notes.txt"))
            let model = try LanguageModel.load(source)
            #expect(throws: ExportError.destinationHoldsSource(path: home.path, source: source.path)) {
                try ModelExport.write(model, to: home, overwrite: true)
            }
            #expect(throws: ExportError.destinationHoldsSource(path: folder.path, source: source.path)) {
                try ModelExport.write(model, to: folder, overwrite: true)
            }
            // A folder and a GGUF that no export wrote.
            let mine = folder.appendingPathComponent("mine")
            try FileManager.default.createDirectory(at: mine, withIntermediateDirectories: false)
            try Data("keep".utf8).write(to: mine.appendingPathComponent("keep.txt"))
            #expect(throws: ExportError.notAnExport(path: mine.path)) { try ModelExport.write(model, to: mine, overwrite: true) }
            let other = folder.appendingPathComponent("other.gguf")
            try FileManager.default.copyItem(at: Self.tinyGGUF, to: other)
            #expect(throws: ExportError.notAnExport(path: other.path)) { try ModelExport.write(model, to: other, overwrite: true) }
            for url in [source, home.appendingPathComponent("notes.txt"), mine.appendingPathComponent("keep.txt"), other] {
                #expect(FileManager.default.fileExists(atPath: url.path), "\(url.path) was removed")
            }
            #expect(try Data(contentsOf: other) == Data(contentsOf: Self.tinyGGUF))
            // Earlier exports, GGUF and Hugging Face, are replaced.
            let gguf = folder.appendingPathComponent("edited.gguf")
            let hf = folder.appendingPathComponent("edited-hf")
            for out in [gguf, hf] {
                try ModelExport.write(model, to: out)
                try ModelExport.write(model, to: out, overwrite: true)
            }
            #expect(try GGUFFile(url: gguf).string("ibke.export") == "written by ibke from tiny.gguf")
        }
    }

    @Test func destinationsThatExistOrAreTheSourceAreRefused() throws {
        let model = try LanguageModel.load(Self.tinyGGUF)
        try Support.withFolder { folder throws in
            let out = folder.appendingPathComponent("taken")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
            try ModelExport.write(model, to: out)  // an empty folder is taken over
            #expect(throws: ExportError.destinationExists(path: out.path, detail: "is a folder that is not empty")) {
                try ModelExport.write(model, to: out)
            }
            try Data("stale".utf8).write(to: out.appendingPathComponent("stale.txt"))
            try ModelExport.write(model, to: out, overwrite: true)
            #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("stale.txt").path))
            #expect(throws: ExportError.destinationIsSource(path: Self.tinyGGUF.path)) {
                try ModelExport.write(model, to: Self.tinyGGUF, overwrite: true)
            }
            let gguf = folder.appendingPathComponent("edited.gguf")
            try ModelExport.write(model, to: gguf)
            #expect(throws: ExportError.self) { try ModelExport.write(model, to: gguf) }
            let huggingFace = try LanguageModel.load(TestModels.fixtures.appendingPathComponent("tiny-llama"))
            #expect(throws: ExportError.self) { try ModelExport.write(huggingFace, to: folder.appendingPathComponent("x.gguf")) }
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)) == ["taken", "edited.gguf"])
        }
    }
}
