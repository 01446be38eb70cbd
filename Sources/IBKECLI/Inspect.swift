import ArgumentParser
import Foundation
import ModelFormats
import Models

/// `ibke inspect`: what a checkpoint holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, hyperparameters, tokenizer and tensors.")

    @Argument(help: "A GGUF file or a Hugging Face folder (default: the default model).")
    var path: String?
    @Flag(help: "Print JSON instead of text.") var json = false
    @OptionGroup var model: ModelOptions

    struct TensorRow: Encodable {
        let name: String
        let type: String
        let shape: [Int]
    }
    struct Report: Encodable {
        let file: String
        let format: String
        let config: TransformerConfigSummary
        let parameters: Int
        let tokenizer: TokenizerSummary
        let metadata: [String: String]
        let tensors: [TensorRow]
    }
    struct TransformerConfigSummary: Encodable {
        let architecture: String, vocabularySize: Int, hiddenSize: Int, feedForwardSize: Int, layerCount: Int
        let headCount: Int, keyValueHeadCount: Int, headDim: Int, contextLength: Int, normKind: String
        let normEpsilon: Float, feedForward: String, positions: String, attentionBias: Bool, tiedEmbeddings: Bool
    }
    struct TokenizerSummary: Encodable {
        let vocabularySize: Int, bos: String?, eos: String?, addsBOS: Bool, chatTemplate: String?
    }

    func run() throws {
        // Nothing is computed: the weights stay mapped, not dequantized.
        let loaded = try model.load(path, precision: .native)
        let c = loaded.config
        var rope = "learned"
        if case .rotary(let theta, _) = c.positions { rope = String(format: "RoPE θ %.6g", theta) }
        let tokenizer = loaded.tokenizer
        let name = { (id: Int?) in id.flatMap { tokenizer.tokenString($0) }.map { "\($0) (\(id!))" } }
        var metadata: [String: String] = [:]
        if let gguf = loaded.ggufFile {
            for key in gguf.metadataKeys {
                guard let value = gguf.metadata[key] else { continue }
                metadata[key] = summary(of: value)
            }
        }
        let tensors = loaded.source.tensorNames.map {
            TensorRow(name: $0, type: loaded.source.typeName(of: $0) ?? "?", shape: loaded.source.shape(of: $0) ?? [])
        }
        let report = Report(
            file: loaded.url.path, format: loaded.format.rawValue,
            config: TransformerConfigSummary(
                architecture: c.architecture.name, vocabularySize: c.vocabularySize, hiddenSize: c.hiddenSize,
                feedForwardSize: c.feedForwardSize, layerCount: c.layerCount, headCount: c.headCount,
                keyValueHeadCount: c.keyValueHeadCount, headDim: c.headDim, contextLength: c.contextLength,
                normKind: c.normKind.rawValue, normEpsilon: c.normEpsilon, feedForward: c.feedForward.rawValue,
                positions: rope, attentionBias: c.attentionBias, tiedEmbeddings: c.tiedEmbeddings),
            parameters: tensors.reduce(0) { $0 + $1.shape.reduce(1, *) },
            tokenizer: TokenizerSummary(
                vocabularySize: tokenizer.vocabularySize, bos: name(tokenizer.bosTokenID), eos: name(tokenizer.eosTokenID),
                addsBOS: tokenizer.addsBOS,
                chatTemplate: tokenizer.chatTemplate.map { ChatTemplate(template: $0)?.family.rawValue ?? "unrecognised" }),
            metadata: metadata, tensors: tensors)
        if json {
            print(try jsonString(report))
            return
        }
        print("file:          \(report.file) (\(report.format))")
        print(
            "architecture:  \(c.architecture), \(c.layerCount) layers, hidden \(c.hiddenSize), FFN \(c.feedForwardSize) (\(c.feedForward.rawValue))"
        )
        print(
            "attention:     \(c.headCount) heads, \(c.keyValueHeadCount) KV heads, head dim \(c.headDim), context \(c.contextLength), \(rope)"
        )
        print(
            "norm:          \(c.normKind.rawValue), eps \(c.normEpsilon); q/k/v bias \(c.attentionBias); tied embeddings \(c.tiedEmbeddings)"
        )
        print("parameters:    \(report.parameters) (\(String(format: "%.1f", Double(report.parameters) / 1e6))M)")
        print(
            "tokenizer:     \(tokenizer.vocabularySize) tokens, BOS \(report.tokenizer.bos ?? "none"), EOS \(report.tokenizer.eos ?? "none"), adds BOS \(tokenizer.addsBOS), chat template \(report.tokenizer.chatTemplate ?? "none")"
        )
        if !metadata.isEmpty {
            print("metadata:")
            for key in metadata.keys.sorted() { print("  \(key) = \(metadata[key]!)") }
        }
        print("tensors (\(tensors.count)):")
        let width = tensors.map(\.name.count).max() ?? 0
        for t in tensors {
            print(
                "  \(t.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(t.type.padding(toLength: 5, withPad: " ", startingAt: 0))  \(t.shape)"
            )
        }
    }

    /// A short text of a metadata value (long arrays summarised).
    func summary(of value: GGUFValue) -> String {
        switch value {
        case .array(let items):
            let head = items.prefix(4).map { summary(of: $0) }.joined(separator: ", ")
            return items.count > 4 ? "[\(head), … (\(items.count) items)]" : "[\(head)]"
        case .string(let s):
            let line = s.replacingOccurrences(of: "\n", with: "\\n")
            return line.count > 80 ? "\"\(line.prefix(77))…\"" : "\"\(line)\""
        default:
            return value.doubleValue.map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int($0)) : String($0) }
                ?? value.boolValue.map(String.init) ?? "\(value)"
        }
    }
}
