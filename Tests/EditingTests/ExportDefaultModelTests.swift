import Foundation
import ModelFormats
import Models
import Testing

@testable import Editing

/// The default model (SmolLM2-135M-Instruct, Q4_1 GGUF), when it has been fetched: a small edit
/// exported as GGUF and as a Hugging Face folder runs like the edited model in memory.
@Suite(.enabled(if: TestModels.hasDefaultModel, "the default model has not been fetched"), .serialized)
struct ExportDefaultModelTests {
    @Test func editedDefaultModelExportsReproduceItsLogits() throws {
        let model = try TestModels.defaultModel()
        let prompts = [
            model.encode("The Eiffel Tower is located in the city of"),
            model.encode("<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n"),
        ]
        let before = try model.logits(prompts)
        _ = try ExportTestSupport.edit(model, layers: [4, 9])
        #expect(try zip(model.logits(prompts), before).contains { $0.scalars != $1.scalars }, "the edit changed nothing")
        try ExportTestSupport.withFolder { folder throws in
            let gguf = folder.appendingPathComponent("edited.gguf")
            let result = try ModelExport.write(model, to: gguf)
            #expect(result.rewrittenTensors.count == 6)
            let source = try GGUFFile(url: TestModels.defaultModelURL)
            let copy = try GGUFFile(url: gguf)
            for name in source.tensorNames where !result.rewrittenTensors.contains(name) {
                #expect(copy.tensorInfo(name)?.type == source.tensorInfo(name)?.type, "\(name)")
                #expect(copy.rawBytes(of: name)!.elementsEqual(source.rawBytes(of: name)!), "\(name)")
            }
            #expect(try ExportTestSupport.worstDifference(LanguageModel.load(gguf), model, prompts: prompts) <= 1e-5)

            let huggingFace = folder.appendingPathComponent("edited-hf")
            try ModelExport.write(model, to: huggingFace)
            let reloaded = try LanguageModel.load(huggingFace)
            #expect(try ExportTestSupport.worstDifference(reloaded, model, prompts: prompts) <= 1e-5)
            ExportTestSupport.expectSameTokenizer(reloaded, model)
        }
    }
}
