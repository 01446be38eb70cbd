import Foundation
import ModelFormats
import Testing

@testable import Models

/// The registry is the one place that maps architecture names to families.
@Suite struct ArchitectureTests {
    @Test func registryNamesAreUniqueAndFound() throws {
        let names = Architecture.registry.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(names == ["llama", "mistral", "qwen2", "gpt2", "gemma3"])
        for architecture in Architecture.registry {
            #expect(Architecture.named(architecture.name) == architecture)
            #expect(architecture.huggingFaceClass.hasSuffix("ForCausalLM") || architecture.huggingFaceClass.hasSuffix("LMHeadModel"))
        }
        #expect(Architecture.named("mamba") == nil)
        let error = #expect(throws: ModelLoadError.self) { try Architecture.named("mamba", file: "m.gguf") }
        #expect("\(error!)".contains("unsupported architecture 'mamba'"))
        #expect("\(error!)".contains("llama, mistral, qwen2, gpt2, gemma3"))
    }

    @Test func encodesAsItsName() throws {
        let qwen2 = try #require(Architecture.named("qwen2"))
        let data = try JSONEncoder().encode([qwen2])
        #expect(String(decoding: data, as: UTF8.self) == #"["qwen2"]"#)
        #expect(try JSONDecoder().decode([Architecture].self, from: data) == [qwen2])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([Architecture].self, from: Data(#"["mamba"]"#.utf8)) }
    }

    /// Every tiny fixture loads through its registered family, and the family writes back the
    /// config.json keys it read.
    @Test(arguments: ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma3"])
    func familyRoundTripsItsConfig(_ name: String) throws {
        let folder = TinyReference.folder(name)
        let json = try HFConfig(contentsOf: folder.appendingPathComponent("config.json"))
        let model = try ModelLoader.transformer(huggingFace: folder)
        #expect(model.config.architecture.modelType == (try json.string("model_type")))
        for (key, value) in try model.config.architecture.huggingFaceConfig(model.config) where json[key] != nil && json[key] != .null {
            #expect(json[key] == value || (json[key]?.doubleValue != nil && json[key]?.doubleValue == value.doubleValue), "\(name): \(key)")
        }
    }

    /// Qwen2 files carry `sliding_window` with `use_sliding_window: false`: not a sliding window.
    @Test func qwen2SlidingWindowOffLoads() throws {
        let source = TinyReference.folder("tiny-qwen2")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-arch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for file in try FileManager.default.contentsOfDirectory(atPath: source.path) where file != "config.json" {
            try FileManager.default.createSymbolicLink(
                at: folder.appendingPathComponent(file),
                withDestinationURL: source.appendingPathComponent(file))
        }
        let config = try String(contentsOf: source.appendingPathComponent("config.json"), encoding: .utf8)
        let windowed = config.replacingOccurrences(of: #""sliding_window": null"#, with: #""sliding_window": 64"#)
        try #require(windowed != config)
        try windowed.write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        #expect(try ModelLoader.transformer(huggingFace: folder).config.contextLength == 128)
        try windowed.replacingOccurrences(of: #""use_sliding_window": false"#, with: #""use_sliding_window": true"#)
            .write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let error = #expect(throws: ModelLoadError.self) { try ModelLoader.transformer(huggingFace: folder) }
        #expect("\(error!)".contains("sliding_window"))
    }
}
