import ArgumentParser
import Editing
import Evaluation
import Foundation
import ModelFormats
import Models
import TensorCore

/// `ibke bench`: prefill and decode speed on a model, as ratios to this machine's limits.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed and compare them with the machine's limits.",
        discussion: """
            Prefill: one forward pass over N prompt tokens with logits at every position; its \
            effective FLOP/s counts 2 FLOP per weight per token (all linear layers and the \
            output head) and is compared with the FP32 GEMM peak. Decode: one token at a time \
            with the KV cache, logits for that token only; it reads every weight once per token \
            and is compared with the memory-bandwidth bound for those bytes. Both limits are \
            measured live (OpenBLAS sgemm 2048², a streaming read of 512 MB) and also quoted \
            from MACHINE.md (205 GFLOP/s, 38.3 GB/s on the project's 2-core Zen 4).
            """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Repetitions per measurement (the best is kept).") var repeats = 3
    @Option(help: "Tokens generated in the decode measurement.") var decodeTokens = 64
    @Flag(help: "Measure gradients instead: forward+backward from the logits to --gradient-layer for 10 prompts of 20 tokens.")
    var gradients = false
    @Option(help: "Layer of the delta in the gradient measurement.") var gradientLayer = 8
    @Option(help: "Prompts of 20 tokens in the gradient measurement.") var gradientPrompts = 10
    @Option(help: "Steps of the delta optimisation in the gradient measurement.") var gradientSteps = 20
    @Option(
        help: ArgumentHelp(
            "Measure seconds per single edit of these methods instead (e.g. rome,memit,alphaedit).",
            valueName: "methods"))
    var edits: String?
    @Option(help: "Timed edits per method in the edit measurement (at most \(EditBenchmark.requests.count - 1)).") var editCount = 10
    @Option(
        help: ArgumentHelp(
            "Measure covariance collection instead: tokens/s over this many tokens of --stats-corpus, layers 4-8.",
            valueName: "tokens"))
    var statsThroughput: Int?
    @OptionGroup var statistics: StatisticsArguments
    @Option(
        name: .customLong("editor"), parsing: .upToNextOption,
        help: ArgumentHelp(
            "METHOD=FILE: the trained editor of ibke or mend for --edits (default: the committed one).",
            valueName: "method=file"))
    var editorFiles: [String] = []
    @Option(
        help: ArgumentHelp(
            "Measure how --dtype native and native-int8 move the next-token distributions from f32 instead: top-1 agreement and KL over this many positions of --stats-corpus, on the prefill and the decode path.",
            valueName: "positions"))
    var agreement: Int?
    @Flag(
        help:
            "Measure the quantized matrix-vector kernels instead: each GGUF format on a 8192×8192 matrix, against float32 sgemv and the memory bound (no model is loaded)."
    )
    var kernels = false
    @Option(
        help: ArgumentHelp(
            "Measure how far line-searched gradient steps on the subject's value (MEMIT's top layer) move the target instead, against ROME/MEMIT's Adam optimisation, on this many records of --dataset.",
            valueName: "records"))
    var valueReach: Int?
    @Option(help: ArgumentHelp("KIND:PATH: the records of --value-reach (zsre, counterfact).", valueName: "kind:path"))
    var dataset: String?
    @Option(help: "Line-searched gradient steps in the value-reach measurement.") var valueSteps = 4
    @Option(help: "The layer whose output takes the value in the value-reach measurement (default: MEMIT's top layer).")
    var valueLayer: Int?

    func run() throws {
        if kernels {
            benchQuantizedKernels(threads: model.threads ?? 2, repeats: repeats)
            return
        }
        var model = self.model
        model.threads = model.threads ?? 2
        let threads = model.threads!
        if agreement != nil { return try measureAgreement() }
        let loaded = try model.load()
        let transformer = loaded.transformer
        let config = transformer.config
        let weights = Double(config.matmulWeightsPerToken)
        log(
            "model: \(config.architecture), \(config.layerCount) layers, \(Int(weights / 1e6))M matmul weights per token, \(threads) threads"
        )
        if let valueReach {
            guard let dataset else { throw CLIError("--value-reach needs --dataset KIND:PATH") }
            guard valueReach >= 1 && (1...16).contains(valueSteps) else {
                throw CLIError("--value-reach must be at least 1 and --value-steps 1 to 16")
            }
            if let valueLayer, !(0..<config.layerCount).contains(valueLayer) {
                throw CLIError("--value-layer must be a layer of the model (0-\(config.layerCount - 1)), not \(valueLayer)")
            }
            return try benchValueReach(
                model: loaded, dataset: try DatasetSpec(parsing: dataset), records: valueReach, steps: valueSteps, layer: valueLayer)
        }
        if gradients {
            guard (0..<config.layerCount).contains(gradientLayer) else {
                throw CLIError("--gradient-layer must be a layer of the model (0-\(config.layerCount - 1)), not \(gradientLayer)")
            }
            guard gradientPrompts >= 1 && gradientSteps >= 1 else {
                throw CLIError("--gradient-prompts and --gradient-steps must be at least 1")
            }
            try benchGradients(
                transformer, layer: gradientLayer, prompts: gradientPrompts, tokens: 20, steps: gradientSteps, repeats: repeats)
            return
        }
        if let edits {
            let bar = ProgressBar()
            try EditBenchmark.run(
                methods: edits.split(separator: ",").map { try EditingMethod(parsing: String($0)) },
                count: min(editCount, EditBenchmark.requests.count - 1), model: loaded,
                editorFiles: try Eval.methodFiles(editorFiles, option: "--editor"),
                statistics: try statistics.secondMoments(for: loaded, bar: bar)
            ) {
                try statistics.prepare($0, bar: bar)
            }
            return
        }
        if let statsThroughput {
            try EditBenchmark.statisticsThroughput(
                model: loaded, layers: Array(4...8).filter { $0 < config.layerCount },
                corpus: try statistics.givenCorpus.map { URL(fileURLWithPath: $0.path) }
                    ?? StatisticsArguments.sample(),
                tokens: statsThroughput, gemmPeak: measureGEMMPeak())
            return
        }

        let gemmPeak = measureGEMMPeak()
        let bandwidth = measureReadBandwidth()
        print(
            String(
                format: "machine: sgemm 2048² %.1f GFLOP/s, streaming read %.1f GB/s (live); MACHINE.md: 205 GFLOP/s, 38.3 GB/s",
                gemmPeak / 1e9, bandwidth / 1e9))

        var rng = SplitMix64(seed: 42)
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(rng.next() % UInt64(config.vocabularySize)) } }

        var prefill512 = 0.0
        for n in [1, 32, 512] {
            let prompt = tokens(n)
            let seconds = best(of: repeats) { _ = try? transformer.forward([prompt], logits: .all) }
            let flops = 2 * weights * Double(n) / seconds
            print(
                String(
                    format: "prefill %4d tokens: %8.1f tokens/s  %6.1f ms  %6.1f GFLOP/s effective", n, Double(n) / seconds, seconds * 1e3,
                    flops / 1e9))
            if n == 512 { prefill512 = flops }
        }

        let prompt = tokens(32)
        var decodeSeconds = Double.infinity
        for _ in 0..<repeats {
            let cache = KVCache(config: config, capacity: prompt.count + decodeTokens)
            var logits = try transformer.forward([prompt], caches: [cache], logits: .last)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<decodeTokens {
                let next = argmax(logits.pointer, count: config.vocabularySize)
                logits = try transformer.forward([[next]], caches: [cache], logits: .last)
            }
            decodeSeconds = min(decodeSeconds, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(decodeTokens))
        }
        let bytesPerToken = 4 * weights
        let decodeBandwidth = bytesPerToken / decodeSeconds
        print(
            String(
                format: "decode (after 32 tokens): %6.1f tokens/s  %6.2f ms/token  %6.1f GB/s of fp32 weights", 1 / decodeSeconds,
                decodeSeconds * 1e3, decodeBandwidth / 1e9))
        print(
            String(
                format: "ratio prefill-512 / GEMM peak: %.0f%% (live) %.0f%% (MACHINE.md 205 GFLOP/s)", 100 * prefill512 / gemmPeak,
                100 * prefill512 / 205e9))
        print(
            String(
                format: "ratio decode / bandwidth bound: %.0f%% (live) %.0f%% (MACHINE.md 38.3 GB/s)", 100 * decodeBandwidth / bandwidth,
                100 * decodeBandwidth / 38.3e9))
    }
}

extension Bench {
    /// `--agreement`: the f32 model against the same file computed on its blocks.
    func measureAgreement() throws {
        guard let corpus = statistics.givenCorpus else {
            throw CLIError("--agreement needs --stats-corpus (or $\(StatisticsArguments.environmentVariable))")
        }
        var exact = model
        exact.dtype = .float32
        try benchPrecisionAgreement(
            url: try model.modelURL(), exact: try exact.load(), corpus: URL(fileURLWithPath: corpus.path),
            positions: agreement!)
    }
}

/// The quantized matrix-vector kernels: weights/s and bytes/s of each format on a matrix far
/// larger than the caches (random blocks: the speed does not depend on the values), against
/// OpenBLAS's float32 product of a matrix of the same shape and the streaming-read bound.
func benchQuantizedKernels(threads: Int, repeats: Int) {
    ComputeThreads.set(threads)
    let rows = 8192
    let columns = 8192
    let weights = Double(rows * columns)
    let bandwidth = measureReadBandwidth()
    print(
        String(
            format: "machine: streaming read %.1f GB/s (live), %d threads; quantized kernels: %@", bandwidth / 1e9, threads,
            QuantizedKernels.instructionSet.description))
    var rng = SplitMix64(seed: 7)
    let x = Tensor(shape: [columns], values: (0..<columns).map { _ in 2 * rng.nextUnit() - 1 })
    let y = Tensor(zeros: [rows])
    let dense = Tensor(shape: [rows, columns], values: (0..<(rows * columns)).map { _ in 2 * rng.nextUnit() - 1 })
    let f32 = best(of: repeats) { MatMul.linear(x.pointer, rows: 1, ldx: columns, weight: dense, into: y.pointer, ldy: rows) }
    print(
        String(
            format: "f32   sgemv: %6.2f Gweights/s  %5.1f GB/s (%3.0f%% of the read bound)", weights / f32 / 1e9,
            4 * weights / f32 / 1e9, 100 * 4 * weights / f32 / bandwidth))
    for format in QuantizedFormat.allCases {
        let bytes = rows * columns / format.blockSize * format.bytesPerBlock
        let storage = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { storage.deallocate() }
        let words = storage.bindMemory(to: UInt64.self, capacity: bytes / 8)
        for i in 0..<(bytes / 8) { words[i] = rng.next() }
        let seconds = best(of: repeats) {
            QuantizedKernels.matrixVector(format, weights: storage, rows: rows, columns: columns, x.pointer, into: y.pointer)
        }
        print(
            String(
                format: "%-5@ gemv:  %6.2f Gweights/s  %5.1f GB/s (%3.0f%% of the read bound), %.2f× f32",
                "\(format)", weights / seconds / 1e9, Double(bytes) / seconds / 1e9,
                100 * Double(bytes) / seconds / bandwidth, f32 / seconds))
        guard QuantizedKernels.hasIntegerKernel(format) else { continue }
        let integer = best(of: repeats) {
            QuantizedKernels.matrixVectorQuantizedActivations(
                format, weights: storage, rows: rows, columns: columns, x.pointer,
                into: y.pointer)
        }
        print(
            String(
                format: "%-5@ int8:  %6.2f Gweights/s  %5.1f GB/s (%3.0f%% of the read bound), %.2f× f32 (activations quantized to int8)",
                "\(format)", weights / integer / 1e9, Double(bytes) / integer / 1e9,
                100 * Double(bytes) / integer / bandwidth, f32 / integer))
    }
}

/// Best wall time of `repeats` runs of `body`, after one warm-up run.
func best(of repeats: Int, _ body: () -> Void) -> Double {
    times(repeats, body).min()!
}

/// Wall times of `repeats` runs of `body` (at least one), after one warm-up run.
func times(_ repeats: Int, _ body: () -> Void) -> [Double] {
    body()
    return (0..<max(1, repeats)).map { _ in
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}

/// The median of `values` (the mean of the middle two for an even count).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1
        ? sorted[sorted.count / 2]
        : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// FLOP/s of a square 2048 sgemm (OpenBLAS) with the current thread count.
func measureGEMMPeak() -> Double {
    let n = 2048
    let a = Tensor(shape: [n, n], values: (0..<(n * n)).map { Float($0 % 7) * 0.1 })
    let c = Tensor(zeros: [n, n])
    let seconds = best(of: 3) {
        MatMul.parallelGEMM(transB: true, m: n, n: n, k: n, a: a.pointer, lda: n, b: a.pointer, ldb: n, c: c.pointer, ldc: n)
    }
    return 2 * Double(n * n * n) / seconds
}

/// Bytes/s of a parallel streaming read (sum) of a 512 MB buffer.
func measureReadBandwidth() -> Double {
    let count = 128 << 20
    let buffer = Tensor(zeros: [count])
    for i in stride(from: 0, to: count, by: 1024) { buffer[i] = 1 }
    let chunks = 64
    let pointer = buffer.pointer
    let seconds = best(of: 3) {
        parallelFor(chunks) { chunk in
            let n = count / chunks
            _ = MatMul.dot(pointer + chunk * n, pointer + chunk * n, n)
        }
    }
    // dot reads the same array twice from one pointer: one stream of 4 bytes per element.
    return Double(count * 4) / seconds
}
