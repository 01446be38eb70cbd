import COpenBLAS
import Foundation
import Models
import TensorCore
import Testing

@testable import Editing

/// How many tokens the second moment needs (Docs/statistics.md): C of the default model at
/// nested sample sizes against the largest, and ROME's `u = C⁻¹k*` for a few real keys.
/// A measurement, not a check: it runs only with `IBKE_MEASURE_STATISTICS=<corpus path>`.
@Suite struct StatisticsSampleSizeTests {
    static let corpus = ProcessInfo.processInfo.environment["IBKE_MEASURE_STATISTICS"]
    static let sizes = [10_000, 25_000, 50_000, 100_000, 200_000, 400_000]
    static let layers = [4, 5, 6, 7, 8]
    static let requests = [
        EditRequest(prompt: "{} is located in the city of", subject: "The Eiffel Tower", targetNew: "Rome"),
        EditRequest(prompt: "The mother tongue of {} is", subject: "Danielle Darrieux", targetNew: "English"),
        EditRequest(prompt: "{} was developed by", subject: "Windows 10", targetNew: "Google"),
        EditRequest(prompt: "{} plays the position of", subject: "Lionel Messi", targetNew: "goalkeeper"),
    ]

    @Test(.enabled(if: corpus != nil && TestModels.hasDefaultModel))
    func sampleSize() throws {
        let model = try TestModels.defaultModel()
        let text = try TextCorpus(url: URL(fileURLWithPath: Self.corpus!))
        var start = Date()
        let windows = TokenWindows.make(
            documents: text.documents, maxLength: 512, samples: Self.sizes.last!, seed: 1,
            encode: model.encode)
        print("tokenised \(text.documents.count) documents in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")

        // k* at each layer: the key at the subject's last token of each prompt.
        let prepared = try Self.requests.map { try $0.prepared(for: model) }
        let stars = try StatisticsCollector.keys(of: prepared.map(\.prompt), layers: Self.layers, in: model).map { keys in
            let f = keys.shape[1]
            let rows = Transformer.packedRows(prepared.map(\.prompt), positions: prepared.map { [$0.subjectLast] })
            return Tensor(shape: [rows.count, f], values: rows.flatMap { Array(keys.rows($0..<($0 + 1)).buffer) })
        }

        // One pass; snapshots of every layer's mean at each size.
        start = Date()
        let accumulators = Self.layers.map { _ in SecondMomentAccumulator(width: model.config.feedForwardSize) }
        var snapshots: [[Tensor]] = []
        var seconds: [Double] = []
        for batch in TokenWindows.batches(windows, tokens: 2048) {
            let keys = try StatisticsCollector.keys(of: batch, layers: Self.layers, in: model)
            var row = 0
            var n = keys[0].shape[0]
            while row < n {
                let done = accumulators[0].tokenCount
                let next = Self.sizes.first { $0 > done } ?? Int.max
                let end = min(n, row + next - done)
                for (a, k) in zip(accumulators, keys) { a.add(k, rows: row..<end) }
                row = end
                if accumulators[0].tokenCount == next {
                    snapshots.append(accumulators.map { $0.mean() })
                    seconds.append(Date().timeIntervalSince(start))
                }
            }
        }
        #expect(snapshots.count == Self.sizes.count)
        print("| tokens | seconds | " + Self.layers.map { "L\($0) ‖ΔC‖/‖C‖ | L\($0) cos u" }.joined(separator: " | ") + " |")
        let largest = snapshots.last!
        for (i, snapshot) in snapshots.enumerated() {
            var cells: [String] = []
            for (l, c) in snapshot.enumerated() {
                let key = StatisticsKey(
                    modelSHA256: "", layer: Self.layers[l], source: .corpus, corpus: "", corpusSHA256: "",
                    sampling: "", samples: nil, windowLength: 512)
                let u = try SecondMoment(key: key, matrix: c, tokenCount: Self.sizes[i], windowCount: 0).solve(stars[l])
                let reference = try SecondMoment(key: key, matrix: largest[l], tokenCount: 0, windowCount: 0).solve(stars[l])
                let cosines = (0..<stars[l].shape[0]).map { Self.cosine(u.rows($0..<($0 + 1)), reference.rows($0..<($0 + 1))) }
                cells.append(String(format: "%.4f", Self.relativeDistance(c, largest[l])))
                cells.append(String(format: "%.4f (min %.4f)", cosines.reduce(0, +) / Double(cosines.count), cosines.min()!))
            }
            print("| \(Self.sizes[i]) | \(String(format: "%.0f", seconds[i])) | " + cells.joined(separator: " | ") + " |")
        }
        // AlphaEdit's null space: eigenvalues below τ = 2e-2 (METHODS.md §4).
        print("| tokens | " + Self.layers.map { "L\($0) λ<2e-2 | L\($0) λmin, λmax" }.joined(separator: " | ") + " |")
        for (i, snapshot) in snapshots.enumerated() {
            let cells = snapshot.map { c in
                let values = Self.eigenvalues(c)
                return "\(values.filter { $0 < 2e-2 }.count) | " + String(format: "%.2e, %.2e", values.first!, values.last!)
            }
            print("| \(Self.sizes[i]) | " + cells.joined(separator: " | ") + " |")
        }
        // How much C matters at all: u with C (largest sample) against u = k* (C = I).
        for (l, layer) in Self.layers.enumerated() {
            let key = StatisticsKey(
                modelSHA256: "", layer: layer, source: .corpus, corpus: "", corpusSHA256: "", sampling: "",
                samples: nil, windowLength: 512)
            let u = try SecondMoment(key: key, matrix: largest[l], tokenCount: 0, windowCount: 0).solve(stars[l])
            let cosines = (0..<stars[l].shape[0]).map { Self.cosine(u.rows($0..<($0 + 1)), stars[l].rows($0..<($0 + 1))) }
            print(
                "L\(layer): cos(C⁻¹k*, k*) = " + cosines.map { String(format: "%.3f", $0) }.joined(separator: ", ")
                    + String(format: "; tr(C) %.2f", SecondMoment(key: key, matrix: largest[l], tokenCount: 0, windowCount: 0).trace))
        }
        // An independent sample (another shuffle seed) of the default size, against seed 1's.
        let other = TokenWindows.make(documents: text.documents, maxLength: 512, samples: 100_000, seed: 2, encode: model.encode)
        let independent = try StatisticsCollector.accumulate(other, layers: Self.layers, model: model, batchTokens: 2048)
        let at100k = snapshots[Self.sizes.firstIndex(of: 100_000)!]
        for (l, layer) in Self.layers.enumerated() {
            let c = independent[l].mean()
            print(
                String(
                    format: "L%d: seed 2 vs seed 1 at 100k: ‖ΔC‖/‖C‖ %.4f; seed 2 at 100k vs seed 1 at %d: %.4f", layer,
                    Self.relativeDistance(c, at100k[l]), Self.sizes.last!, Self.relativeDistance(c, largest[l])))
        }
        let total = Self.sizes.last!
        print(
            String(
                format: "collection: %d tokens, layers 4-8, in %.0f s: %.0f tokens/s", total, seconds.last!,
                Double(total) / seconds.last!))
    }

    /// Eigenvalues of a symmetric matrix, ascending.
    static func eigenvalues(_ c: Tensor) -> [Float] {
        try! DenseSolve.symmetricEigen(c).values
    }

    static func relativeDistance(_ a: Tensor, _ b: Tensor) -> Double {
        var difference = 0.0
        var norm = 0.0
        for i in 0..<a.count {
            difference += Double(a[i] - b[i]) * Double(a[i] - b[i])
            norm += Double(b[i]) * Double(b[i])
        }
        return (difference / norm).squareRoot()
    }

    static func cosine(_ a: Tensor, _ b: Tensor) -> Double {
        var dot = 0.0
        var aa = 0.0
        var bb = 0.0
        for i in 0..<a.count {
            dot += Double(a[i]) * Double(b[i])
            aa += Double(a[i]) * Double(a[i])
            bb += Double(b[i]) * Double(b[i])
        }
        return dot / (aa * bb).squareRoot()
    }
}
