import Foundation
import ModelFormats
import TestSupport
import Testing

@Suite struct HFConfigTests {
    private static let text = #"""
        {
          "architectures": ["LlamaForCausalLM"],
          "hidden_size": 64,
          "max_position_embeddings": 2048.0,
          "rms_norm_eps": 1e-05,
          "rope_theta": 10000,
          "tie_word_embeddings": false,
          "model_type": "llama",
          "pad_token_id": null,
          "eos_token_id": [1, 2],
          "bos_token_id": 0,
          "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "original_max_position_embeddings": 32,
            "nested": {"deeper": "x"}
          }
        }
        """#

    private func config(in folder: URL, _ text: String = Self.text) throws -> (HFConfig, URL) {
        let url = try writeText(text, named: "config.json", in: folder)
        return (try HFConfig(contentsOf: url), url)
    }

    @Test func typedAccessors() throws {
        try withTemporaryDirectory { folder in
            let (c, _) = try config(in: folder)
            #expect(try c.int("hidden_size") == 64)
            #expect(try c.int("max_position_embeddings") == 2048)
            #expect(try c.double("rms_norm_eps") == 1e-5)
            #expect(try c.double("rope_theta") == 10000)
            #expect(try c.bool("tie_word_embeddings") == false)
            #expect(try c.string("model_type") == "llama")
            #expect(try c.strings("architectures") == ["LlamaForCausalLM"])
            #expect(try c.ints("eos_token_id") == [1, 2])
            #expect(try c.ints("bos_token_id") == [0])
            #expect(c.contains("hidden_size") && !c.contains("pad_token_id"))
            #expect(!c.contains("absent"))
            #expect(c["pad_token_id"] == .null)
            #expect(c.keys.first == "architectures")
        }
    }

    @Test func optionalAndDefaultedAccessors() throws {
        try withTemporaryDirectory { folder in
            let (c, _) = try config(in: folder)
            #expect(try c.intIfPresent("pad_token_id") == nil)  // null counts as absent
            #expect(try c.intIfPresent("num_key_value_heads") == nil)
            #expect(try c.int("num_key_value_heads", default: 4) == 4)
            #expect(try c.double("absent", default: 0.5) == 0.5)
            #expect(try c.bool("absent", default: true))
            #expect(try c.string("absent", default: "silu") == "silu")
            #expect(try c.objectIfPresent("absent") == nil)
            #expect(try c.intsIfPresent("absent") == nil)
            #expect(try c.stringsIfPresent("architectures") == ["LlamaForCausalLM"])
        }
    }

    @Test func nestedObjects() throws {
        try withTemporaryDirectory { folder in
            let (c, _) = try config(in: folder)
            let scaling = try c.object("rope_scaling")
            #expect(scaling.keyPath == "rope_scaling")
            #expect(try scaling.string("rope_type") == "llama3")
            #expect(try scaling.double("factor") == 8)
            #expect(try scaling.int("original_max_position_embeddings") == 32)
            #expect(try scaling.object("nested").string("deeper") == "x")
        }
    }

    @Test func errorsNameTheFileAndTheKey() throws {
        try withTemporaryDirectory { folder in
            let (c, url) = try config(in: folder)
            let missing = #expect(throws: HFConfigError.self) { try c.int("num_hidden_layers") }
            #expect(missing == .missingKey(file: url.path, key: "num_hidden_layers"))
            expectNames(missing, file: url, "missing key 'num_hidden_layers'")

            let wrong = #expect(throws: HFConfigError.self) { try c.int("model_type") }
            expectNames(wrong, file: url, "'model_type'", "must be integer", #"string "llama""#)

            let fractional = #expect(throws: HFConfigError.self) { try c.int("rms_norm_eps") }
            expectNames(fractional, file: url, "'rms_norm_eps'", "number 1e-05")

            let null = #expect(throws: HFConfigError.self) { try c.int("pad_token_id") }
            expectNames(null, file: url, "'pad_token_id'", "found null")

            let notBool = #expect(throws: HFConfigError.self) { try c.bool("bos_token_id") }
            expectNames(notBool, file: url, "'bos_token_id'", "must be boolean")

            let nested = #expect(throws: HFConfigError.self) {
                try c.object("rope_scaling").int("low_freq_factor")
            }
            expectNames(nested, file: url, "'rope_scaling.low_freq_factor'")

            let deeper = #expect(throws: HFConfigError.self) {
                try c.object("rope_scaling").object("nested").double("deeper")
            }
            expectNames(deeper, file: url, "'rope_scaling.nested.deeper'", "must be number")

            let notObject = #expect(throws: HFConfigError.self) { try c.object("hidden_size") }
            expectNames(notObject, file: url, "'hidden_size'", "must be object")

            let mixedList = #expect(throws: HFConfigError.self) { try c.ints("architectures") }
            expectNames(mixedList, file: url, "'architectures'", "array of integers")
        }
    }

    @Test func unreadableOrMalformedFiles() throws {
        try withTemporaryDirectory { folder in
            let absent = folder.appendingPathComponent("config.json")
            let unreadable = #expect(throws: HFConfigError.self) {
                try HFConfig(contentsOf: absent)
            }
            expectNames(unreadable, file: absent, "cannot read config")

            let invalidURL = try writeText(
                #"{"hidden_size": 64,"#, named: "config.json", in: folder)
            let invalid = #expect(throws: HFConfigError.self) {
                try HFConfig(contentsOf: invalidURL)
            }
            expectNames(invalid, file: invalidURL, "not valid JSON")

            let arrayURL = try writeText("[1]", named: "config.json", in: folder)
            let array = #expect(throws: HFConfigError.self) { try HFConfig(contentsOf: arrayURL) }
            expectNames(array, file: arrayURL, "config must be a JSON object, found array")
        }
    }

    @Test func readsAConfigWrittenByTransformers() throws {
        // transformers 5 writes rope settings as `rope_parameters` (rope_theta included).
        let url = try fixtureURL("sharded/config.json")
        let c = try HFConfig(contentsOf: url)
        #expect(try c.string("model_type") == "llama")
        #expect(try c.int("hidden_size") == 16)
        #expect(try c.int("num_key_value_heads") == 1)
        #expect(try c.double("rms_norm_eps") == 1e-6)
        #expect(try c.object("rope_parameters").double("rope_theta") == 10000)
        #expect(try c.intIfPresent("pad_token_id") == nil)
        #expect(try c.bool("tie_word_embeddings") == false)
    }
}
