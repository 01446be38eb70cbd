import Foundation
import ModelFormats
import TensorCore
import Tokenizers

/// A loaded checkpoint: the transformer, its tokenizer, and where it came from.
///
/// This is the inference API every part of IBKE uses: logits for batches, teacher-forced
/// log-probabilities of target continuations (the core of every editing metric), top-k next
/// tokens and generation.
/// `@unchecked Sendable`: the one mutable property, `cachedContentHash`, is touched only under
/// `hashLock`.
public final class LanguageModel: @unchecked Sendable {
    public enum Format: String, Sendable {
        case gguf
        case huggingFace = "hf"
    }

    public let transformer: Transformer
    public let tokenizer: any Tokenizer
    /// The GGUF file or Hugging Face folder.
    public let url: URL
    public let format: Format
    /// The tensors as stored (for `inspect`); kept open, it costs only a memory map.
    public let source: any TensorSource
    /// GGUF metadata, for GGUF files.
    public let ggufFile: GGUFFile?

    public var config: TransformerConfig { transformer.config }

    private let hashLock = NSLock()
    private var cachedContentHash: String?

    /// SHA-256 identifying the checkpoint's content (not its file name): of the GGUF file, or
    /// for a Hugging Face folder of the list `name<TAB>sha256` of its config.json,
    /// tokenizer.json and safetensors files. Deltas, statistics caches and evaluation runs
    /// are keyed by it. Computed once per loaded model.
    public func contentHash() throws -> String {
        hashLock.lock()
        defer { hashLock.unlock() }
        if let cachedContentHash { return cachedContentHash }
        let hash: String
        switch format {
        case .gguf:
            hash = try SHA256.hex(file: url)
        case .huggingFace:
            let names = try FileManager.default.contentsOfDirectory(atPath: url.path).filter {
                $0 == "config.json" || $0 == "tokenizer.json" || $0.hasSuffix(".safetensors")
            }.sorted()
            var listing = ""
            for name in names {
                listing += "\(name)\t\(try SHA256.hex(file: url.appendingPathComponent(name)))\n"
            }
            hash = Data(listing.utf8).withUnsafeBytes { SHA256.hex($0) }
        }
        cachedContentHash = hash
        return hash
    }

    init(
        transformer: Transformer, tokenizer: any Tokenizer, url: URL, format: Format,
        source: any TensorSource, ggufFile: GGUFFile?
    ) {
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.url = url
        self.format = format
        self.source = source
        self.ggufFile = ggufFile
    }

    /// Loads a GGUF file or a Hugging Face folder (`config.json`, safetensors, `tokenizer.json`).
    ///
    /// - Throws: ``ModelLoadError``, `GGUFError`, `SafetensorsError` or `TokenizerError`,
    ///   each naming the file and the problem.
    public static func load(_ url: URL, precision: WeightPrecision = .float32) throws -> LanguageModel {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ModelLoadError.notAModel(file: url.path, detail: "no such file or folder")
        }
        if isDirectory.boolValue {
            let tokenizerURL = url.appendingPathComponent("tokenizer.json")
            guard FileManager.default.fileExists(atPath: tokenizerURL.path) else {
                throw ModelLoadError.missingTokenizer(file: url.path, detail: "no tokenizer.json in the folder")
            }
            let checkpoint = try SafetensorsCheckpoint(url: url)
            let transformer = try ModelLoader.transformer(huggingFace: url, checkpoint: checkpoint)
            // The loader reads tokenizer_config.json beside tokenizer.json when there is one.
            let tokenizer = try Tokenizers.load(tokenizerJSON: tokenizerURL)
            return LanguageModel(
                transformer: transformer, tokenizer: tokenizer, url: url, format: .huggingFace,
                source: checkpoint, ggufFile: nil)
        }
        let file = try GGUFFile(url: url)
        let transformer = try ModelLoader.transformer(gguf: file, precision: precision)
        guard file.metadata["tokenizer.ggml.model"] != nil else {
            throw ModelLoadError.missingTokenizer(file: url.lastPathComponent, detail: "no tokenizer.ggml.model metadata")
        }
        let tokenizer = try Tokenizers.load(ggufMetadata: file.metadata, source: url.lastPathComponent)
        file.releaseHeaderPages()
        return LanguageModel(
            transformer: transformer, tokenizer: tokenizer, url: url, format: .gguf,
            source: file, ggufFile: file)
    }

    // MARK: Text

    /// Token ids of `text`, with the BOS/EOS the tokenizer's configuration asks for.
    public func encode(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }

    /// Token ids of a continuation: no BOS/EOS (it follows a prompt).
    public func encodeContinuation(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: false) }

    // MARK: Inference

    /// Logits at every position of each sequence: one `[T, V]` tensor per sequence.
    public func logits(_ sequences: [[Int]]) throws -> [Tensor] {
        let all = try transformer.forward(sequences, logits: .all)
        var row = 0
        return sequences.map { tokens in
            defer { row += tokens.count }
            return all.rows(row..<(row + tokens.count))
        }
    }

    /// Teacher-forced scores of target continuations after prompts, batched.
    ///
    /// Requests are packed into ragged batches of at most `tokensPerBatch` tokens; only the
    /// positions that predict target tokens get logits.
    public func score(_ requests: [ContinuationRequest], tokensPerBatch: Int = 4096) throws -> [ContinuationScore] {
        var results: [ContinuationScore] = []
        results.reserveCapacity(requests.count)
        var start = 0
        while start < requests.count {
            var end = start
            var tokens = 0
            repeat {
                tokens += requests[end].prompt.count + requests[end].target.count
                end += 1
            } while end < requests.count && tokens + requests[end].prompt.count + requests[end].target.count <= tokensPerBatch
            results += try scoreBatch(Array(requests[start..<end]))
            start = end
        }
        return results
    }

    private func scoreBatch(_ requests: [ContinuationRequest]) throws -> [ContinuationScore] {
        for (i, r) in requests.enumerated() {
            guard !r.prompt.isEmpty else { throw InferenceError.emptyPrompt(request: i) }
            guard !r.target.isEmpty else { throw InferenceError.emptyTarget(request: i) }
        }
        // The input is prompt + target minus its last token; position p predicts token p + 1.
        let sequences = requests.map { $0.prompt + $0.target.dropLast() }
        let positions = requests.map { r in Array((r.prompt.count - 1)..<(r.prompt.count + r.target.count - 1)) }
        let logits = try transformer.forward(sequences, logits: .positions(positions))
        let v = config.vocabularySize
        var row = 0
        return requests.map { r in
            var logProbs: [Float] = []
            var argmaxes: [Int] = []
            var ranks: [Int] = []
            for token in r.target {
                let values = logits.pointer + row * v
                let lse = Kernels.logSumExp(values, count: v)
                logProbs.append(values[token] - lse)
                argmaxes.append(argmax(values, count: v))
                ranks.append(rank(of: token, values, count: v))
                row += 1
            }
            return ContinuationScore(target: r.target, tokenLogProbs: logProbs, argmaxTokens: argmaxes, ranks: ranks)
        }
    }

    /// The `k` most likely next tokens after `prompt`, with log-probabilities, best first.
    public func topNextTokens(_ prompt: [Int], k: Int) throws -> [(id: Int, logProb: Float)] {
        guard !prompt.isEmpty else { throw InferenceError.emptyPrompt(request: 0) }
        let logits = try transformer.forward([prompt], logits: .last)
        let v = config.vocabularySize
        let lse = Kernels.logSumExp(logits.pointer, count: v)
        return topK(logits.pointer, count: v, k: k).map { ($0, logits[$0] - lse) }
    }
}

/// A prompt and a target continuation, as token ids.
public struct ContinuationRequest: Sendable, Hashable {
    public var prompt: [Int]
    public var target: [Int]
    public init(prompt: [Int], target: [Int]) {
        self.prompt = prompt
        self.target = target
    }
}

/// Teacher-forced log-probabilities of a target continuation.
public struct ContinuationScore: Sendable, Equatable {
    public let target: [Int]
    /// `log P(target[i] | prompt, target[..<i])`.
    public let tokenLogProbs: [Float]
    /// The model's most likely token at each target position.
    public let argmaxTokens: [Int]
    /// Rank of each target token among the logits at its position (0: the argmax, or tied
    /// with it); "in the top k" is `rank < k`.
    public let ranks: [Int]

    /// `log P(target | prompt)`.
    public var totalLogProb: Float { tokenLogProbs.reduce(0, +) }
    /// Mean per-token log-probability (the length-normalised score).
    public var meanLogProb: Float { totalLogProb / Float(max(1, tokenLogProbs.count)) }
    /// Fraction of target tokens that are the argmax (zsRE-style token accuracy).
    public var tokenAccuracy: Float {
        Float(zip(target, argmaxTokens).filter { $0 == $1 }.count) / Float(max(1, target.count))
    }
}

/// Errors of inference requests.
public enum InferenceError: Error, CustomStringConvertible, Equatable {
    case emptyPrompt(request: Int)
    case emptyTarget(request: Int)

    public var description: String {
        switch self {
        case .emptyPrompt(let i): "request \(i): the prompt has no tokens"
        case .emptyTarget(let i): "request \(i): the target has no tokens"
        }
    }
}

/// Index of the largest of `count` values (the first on ties).
public func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for i in 1..<count where values[i] > values[best] { best = i }
    return best
}

/// How many of `count` values are strictly larger than the value at `index`.
public func rank(of index: Int, _ values: UnsafePointer<Float>, count: Int) -> Int {
    let x = values[index]
    var larger = 0
    for i in 0..<count where values[i] > x { larger += 1 }
    return larger
}

/// Indices of the `k` largest values, largest first (ties by lower index).
public func topK(_ values: UnsafePointer<Float>, count: Int, k: Int) -> [Int] {
    let k = min(k, count)
    guard k > 0 else { return [] }
    var heap: [Int] = []  // kept sorted, best first; k is small
    heap.reserveCapacity(k + 1)
    for i in 0..<count {
        let v = values[i]
        if heap.count == k, let last = heap.last, !(v > values[last]) { continue }
        var position = heap.count
        while position > 0 && values[heap[position - 1]] < v { position -= 1 }
        heap.insert(i, at: position)
        if heap.count > k { heap.removeLast() }
    }
    return heap
}
