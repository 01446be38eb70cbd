import Editing
import Foundation
import Models
import TensorCore

/// `ibke bench --edits`: seconds per single edit of each method (issue 5's speed criterion),
/// with statistics, projectors and context templates prepared before the clock starts, as an
/// evaluation run has them after its first case; and `--stats-throughput`: covariance
/// collection speed as a fraction of the GEMM peak.
enum EditBenchmark {
    /// CounterFact-style requests (facts the default model knows, new targets it does not).
    static let requests: [EditRequest] = [
        ("{} is located in the city of", "The Eiffel Tower", "Rome"),
        ("The mother tongue of {} is", "Danielle Darrieux", "English"),
        ("{}, which is located in", "Autonomous University of Madrid", "Sweden"),
        ("{} is a native speaker of", "Thomas Joannes Stieltjes", "English"),
        ("{} plays the", "Miles Davis", "violin"),
        ("The headquarters of {} is in", "Apple Inc.", "Berlin"),
        ("{} was born in", "Albert Einstein", "Canada"),
        ("{} is a professional", "Lionel Messi", "basketball player"),
        ("The capital of {} is", "Japan", "Lyon"),
        ("{} was developed by", "Windows 95", "Google"),
        ("{}'s original language is", "Le Monde", "Japanese"),
    ].map { try! EditRequest(prompt: $0.0, subject: $0.1, targetNew: $0.2) }

    /// Median, fastest and slowest seconds per single edit, after one untimed edit.
    static func run(
        methods: [EditingMethod], count: Int, model: LanguageModel, editorFiles: [EditingMethod: URL] = [:],
        statistics: SecondMoments, prepare: (SecondMoments) throws -> Void
    ) throws {
        let requests = try requests.prefix(count + 1).enumerated().map { try $1.prepared(for: model, index: $0) }
        let editors = try methods.map {
            try EditorRegistry.make(
                $0, model: model, statistics: statistics,
                editorFile: try CommittedEditors.file($0, given: editorFiles[$0]?.path, model: model))
        }
        try prepare(statistics)
        print(
            "single edits: \(requests.count - 1) CounterFact-style requests, one untimed warm-up edit per method "
                + "(context templates, C factors, projectors); statistics: \(statistics.label)")
        for editor in editors {
            _ = try editor.edit([requests[0]], in: model)
            var seconds: [Double] = []
            for request in requests.dropFirst() {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try editor.edit([request], in: model)
                seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            seconds.sort()
            let median =
                seconds.count % 2 == 1
                ? seconds[seconds.count / 2]
                : (seconds[seconds.count / 2 - 1] + seconds[seconds.count / 2]) / 2
            print(
                String(
                    format: "%@ median %6.2f s per edit (fastest %.2f, slowest %.2f; %d edits)",
                    editor.name.padding(toLength: 10, withPad: " ", startingAt: 0) as NSString, median, seconds.first!, seconds.last!,
                    seconds.count))
        }
    }

    /// Collects `tokens` tokens of statistics for `layers` (not cached) and reports tokens/s and
    /// the FLOP rate: the forward pass up to the highest layer (2 FLOP per weight per token)
    /// plus one `ssyrk` per layer (F² FLOP per token).
    static func statisticsThroughput(model: LanguageModel, layers: [Int], corpus: URL?, tokens: Int, gemmPeak: Double) throws {
        let c = model.config
        let perBlock = Double(c.matmulWeightsPerToken - c.vocabularySize * c.hiddenSize) / Double(c.layerCount)
        let flopsPerToken = 2 * perBlock * Double(layers.max()! + 1) + Double(layers.count * c.feedForwardSize * c.feedForwardSize)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-bench-stats-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = StatisticsOptions(layers: layers, corpus: corpus)
        options.samples = tokens
        options.maxLength = min(512, c.contextLength)
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try StatisticsCollector.collect(
            options, model: model, cache: StatisticsCache(directory: directory, ibkeVersion: IBKECommand.version))
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let rate = Double(tokens) / seconds
        print(
            String(
                format:
                    "statistics: layers %@, %d tokens (%@) in %.1f s: %.0f tokens/s, %.1f GFLOP/s = %.0f%% of the sgemm peak (%.1f GFLOP/s live)",
                layers.map(String.init).joined(separator: ",") as NSString, tokens,
                (corpus?.lastPathComponent ?? "model samples") as NSString, seconds, rate,
                rate * flopsPerToken / 1e9, 100 * rate * flopsPerToken / gemmPeak, gemmPeak / 1e9))
    }
}
