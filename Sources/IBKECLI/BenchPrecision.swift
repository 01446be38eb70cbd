import Editing
import Foundation
import Models
import TensorCore

/// `ibke bench --agreement`: how far computing on the file's blocks (``WeightPrecision/native``
/// and ``WeightPrecision/nativeInt8``) moves the next-token distributions from the float32
/// path, on windows of real text. The prefill path (dequantized tiles and BLAS) and the decode
/// path (one token at a time with the KV cache: the dot-product kernels) are measured apart.
func benchPrecisionAgreement(url: URL, exact: LanguageModel, corpus: URL, positions: Int, window: Int = 128) throws {
    let text = try TextCorpus(url: corpus)
    let v = exact.config.vocabularySize
    var windows: [[Int]] = []
    var total = 0
    for document in text.documents where total < positions {
        let tokens = exact.encode(document)
        var start = 0
        while start + window <= tokens.count && total < positions {
            let n = min(window, positions - total)
            windows.append(Array(tokens[start..<(start + n)]))
            total += n
            start += window
        }
    }
    guard total > 0 else { throw CLIError("\(corpus.path): no window of \(window) tokens") }

    struct Tally {
        var agree = 0, count = 0, kl = 0.0, worstKL = 0.0
        mutating func add(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, v: Int) {
            if argmax(p, count: v) == argmax(q, count: v) { agree += 1 }
            let lp = Kernels.logSumExp(p, count: v)
            let lq = Kernels.logSumExp(q, count: v)
            var sum = 0.0
            for i in 0..<v {
                let a = Double(p[i] - lp)
                sum += exp(a) * (a - Double(q[i] - lq))
            }
            sum = max(0, sum)  // rounding can take an almost-zero KL below zero
            kl += sum
            worstKL = max(worstKL, sum)
            count += 1
        }
        var line: String {
            String(
                format: "top-1 agreement %.2f%% (%d of %d), mean KL from f32 %.5f nats, largest %.4f",
                100 * Double(agree) / Double(count), agree, count, kl / Double(count), worstKL)
        }
    }
    print("against f32 on \(total) positions of \(text.identity) (windows of \(window) tokens):")
    for precision in [WeightPrecision.native, .nativeInt8] {
        let native = try LanguageModel.load(url, precision: precision)
        var prefill = Tally()
        var decode = Tally()
        for tokens in windows {
            let reference = try exact.transformer.forward([tokens])
            let whole = try native.transformer.forward([tokens])
            let cache = KVCache(config: native.config, capacity: tokens.count)
            for (t, token) in tokens.enumerated() {
                let row = reference.pointer + t * v
                prefill.add(row, whole.pointer + t * v, v: v)
                let step = try native.transformer.forward([[token]], caches: [cache], logits: .last)
                decode.add(row, step.pointer, v: v)
            }
        }
        print("  \(precision.rawValue) prefill: \(prefill.line)")
        print("  \(precision.rawValue) decode:  \(decode.line)")
    }
}
