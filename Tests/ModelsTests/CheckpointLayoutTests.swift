import Foundation
import ModelFormats
import TensorCore
import Testing

@testable import Models

/// `checkpointTensors` is the loaders' inverse: what it lays out in either naming, read back by
/// the loader of that naming (which rejects missing and unexpected tensors), is the model again.
/// This covers the layouts no fixture file has, such as GPT-2 in llama.cpp's names.
@Suite struct CheckpointLayoutTests {
    /// Row orders become runs of evenly spaced rows, so that quantized blocks need no copy.
    @Test func rowOrdersBecomeStridedRuns() {
        let order = LlamaFamily.rowOrder(heads: 2, headDim: 4)
        let runs = CheckpointReader.runs(order, rows: 8)
        #expect(runs.flatMap { run in (0..<run.count).map { run.first + $0 * run.step } } == order)
        #expect(runs.allSatisfy { $0.step == 2 && $0.count == 2 })
        #expect(CheckpointReader.runs([], rows: 5).map { [$0.first, $0.step, $0.count] } == [[0, 1, 5]])
        #expect(CheckpointReader.runs([3, 1, 2], rows: 3).map { [$0.first, $0.step, $0.count] } == [[3, 1, 1], [1, 1, 2]])
    }

    /// Tensors held in memory, as a checkpoint the loaders read.
    struct MemorySource: TensorSource {
        let url = URL(fileURLWithPath: "memory")
        let tensorNames: [String]
        let tensors: [String: CheckpointTensor]

        init(_ tensors: [CheckpointTensor]) {
            tensorNames = tensors.map(\.name)
            self.tensors = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
        }

        func shape(of name: String) -> [Int]? { tensors[name]?.shape }
        func typeName(of name: String) -> String? { tensors[name] == nil ? nil : "F32" }
        func readFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
            _ = destination.update(fromContentsOf: tensors[name]!.values())
        }
    }

    static func readBack(_ tensors: [CheckpointTensor], _ naming: CheckpointNaming, config c: TransformerConfig) throws -> Transformer {
        var reader = CheckpointReader(MemorySource(tensors))
        let weights = try c.architecture.family.weights(&reader, config: c, naming: naming)
        try reader.finish()
        return Transformer(config: c, weights: weights)
    }

    @Test(arguments: ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-gemma3"], [CheckpointNaming.gguf, .huggingFace])
    func layoutsReadBackAsTheSameModel(_ name: String, _ naming: CheckpointNaming) throws {
        let model = try ModelLoader.transformer(huggingFace: TinyReference.folder(name))
        let again = try Self.readBack(model.checkpointTensors(naming), naming, config: model.config)
        for (a, b) in zip(again.checkpointTensors(.huggingFace), model.checkpointTensors(.huggingFace)) {
            #expect(a.name == b.name && a.shape == b.shape)
            #expect(a.values().map(\.bitPattern) == b.values().map(\.bitPattern), "\(a.name)")
        }
    }

    @Test func llamaGGUFLayoutPermutesQueryAndKeyRowsOnly() throws {
        let model = try ModelLoader.transformer(huggingFace: TinyReference.folder("tiny-llama"))
        let gguf = Dictionary(uniqueKeysWithValues: model.checkpointTensors(.gguf).map { ($0.name, $0.values()) })
        let hf = Dictionary(uniqueKeysWithValues: model.checkpointTensors(.huggingFace).map { ($0.name, $0.values()) })
        #expect(gguf["blk.0.attn_q.weight"] != hf["model.layers.0.self_attn.q_proj.weight"])
        #expect(gguf["blk.1.attn_k.weight"] != hf["model.layers.1.self_attn.k_proj.weight"])
        #expect(gguf["blk.1.attn_v.weight"] == hf["model.layers.1.self_attn.v_proj.weight"])
        #expect(gguf["blk.0.ffn_gate.weight"] == hf["model.layers.0.mlp.gate_proj.weight"])
        // Row 1 of head 0 in llama.cpp's order is row D/2 in transformers' order.
        let columns = model.config.hiddenSize
        let d = model.config.headDim
        #expect(
            Array(gguf["blk.0.attn_q.weight"]![columns..<(2 * columns)])
                == Array(hf["model.layers.0.self_attn.q_proj.weight"]![(d / 2 * columns)..<((d / 2 + 1) * columns)]))
    }
}
