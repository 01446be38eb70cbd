import Foundation
import Testing

@testable import Evaluation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Two runs as `ibke eval` would summarise them: single zsRE edits by two methods (one with a
/// name full of markup characters), and a sequential CounterFact run with curves.
enum ReportFixtures {
    static let oddName = #"a<b&"c""#

    static let zsre = RunSummary(
        run: "zsre-single", modelPath: "/models/SmolLM2-135M-Instruct-Q4_1.gguf",
        modelSHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        datasetKind: "zsre", datasetFormat: "json", datasetPath: "data/zsre_eval.json",
        settings: EvaluationSettings(
            metricFamily: "zsre-token-accuracy", protocolKind: "single", batchSize: 1,
            evaluateEvery: 0, topK: 1, chatTemplate: false, generation: true,
            zsreTarget: .alt, seed: 42),
        metricInfo: [
            MetricInfo(name: "reliability", label: "Rel.", definition: "token accuracy of alt on src, teacher-forced, top-1"),
            MetricInfo(name: "generalization", label: "Gen.", definition: "token accuracy of alt on rephrase"),
            MetricInfo(name: "locality", label: "Loc.", definition: "agreement with the unedited model on loc"),
        ],
        methods: [
            MethodSummary(
                method: "FT-L", hyperparameters: .object([:]), statistics: "none", cases: 2,
                metrics: ["reliability": 0.954, "generalization": 0.5, "locality": 0.871],
                preMetrics: ["reliability": 0.123, "generalization": 0.1, "locality": 1],
                editSecondsMean: 1.234, evaluationSecondsMean: 0.0456, curve: []),
            MethodSummary(
                method: oddName, hyperparameters: .object([:]), statistics: "none", cases: 2,
                metrics: ["reliability": 1, "generalization": 0.25],
                preMetrics: ["reliability": 0.123, "generalization": 0.1, "locality": 1],
                editSecondsMean: 12.5, evaluationSecondsMean: 0.5, curve: []),
        ],
        created: "2025-01-02T03:04:05Z")

    static let counterfact = RunSummary(
        run: "cf-sequential", modelPath: "/models/gpt2-xl",
        modelSHA256: "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
        datasetKind: "counterfact", datasetFormat: "json", datasetPath: "data/counterfact.json",
        settings: EvaluationSettings(
            metricFamily: "counterfact-probability", protocolKind: "sequential", batchSize: 1,
            evaluateEvery: 5, topK: 1, chatTemplate: false, generation: true,
            zsreTarget: .alt, seed: 7),
        metricInfo: [
            MetricInfo(name: "efficacy_score", label: "ES", definition: "P(new) > P(true) on the prompt"),
            MetricInfo(name: "reliability", label: "Rel.", definition: "token accuracy of alt on src, teacher-forced, top-1"),
            MetricInfo(name: "fluency", label: "GE", definition: "generation entropy (bits) of n-gram distribution"),
        ],
        methods: ["FT-L", "FT-M"].enumerated().map { index, name in
            let shift = Double(index) * 0.1
            return MethodSummary(
                method: name, hyperparameters: .object([:]), statistics: "none", cases: 10,
                metrics: ["efficacy_score": 0.6 + shift, "reliability": 0.55 + shift, "fluency": 6.2234 - shift],
                preMetrics: ["efficacy_score": 0.2 + shift, "reliability": 0.1, "fluency": 6.25],
                editSecondsMean: 2, evaluationSecondsMean: 0.25,
                curve: [
                    CurvePoint(edits: 5, metrics: ["efficacy_score": 0.9 - shift, "reliability": 0.8]),
                    CurvePoint(edits: 10, metrics: ["efficacy_score": 0.6 + shift, "reliability": 0.55 + shift]),
                ])
        },
        created: "2025-01-03T00:00:00Z")
}

@Suite struct ReportTests {
    @Test func markdownStatesSettingsLabelsAndScaledValues() {
        let markdown = SummaryTable.markdown([ReportFixtures.zsre])
        for line in [
            "# IBKE evaluation: zsre-single",
            "- **Model:** SmolLM2-135M-Instruct-Q4_1.gguf (sha256 0123456789ab)",
            "- **Dataset:** zsre (json) data/zsre_eval.json, 2 cases",
            "- **Protocol:** single", "- **Metric family:** zsre-token-accuracy",
            "- **Top-k:** 1 (argmax)", "- **Chat template:** off", "- **Generation metrics:** on",
            "- **zsRE target:** alt", "- **Seed:** 42",
        ] {
            #expect(markdown.contains(line), "missing \(line)")
        }
        #expect(!markdown.contains("0123456789abc"))
        #expect(markdown.contains("| Method | Rel. | Gen. | Loc. | Edit s/case | Eval s/case |"))
        // Both methods start from the same model: one pre-edit row.
        #expect(markdown.contains("| *unedited model* | 12.3 | 10.0 | 100.0 | – | – |"))
        #expect(markdown.contains("| FT-L | 95.4 | 50.0 | 87.1 | 1.23 | 0.046 |"))
        // Markup characters are escaped; a metric the method lacks is a dash.
        #expect(markdown.contains(#"| a\<b&"c" | 100.0 | 25.0 | – | 12.5 | 0.500 |"#))
        #expect(markdown.contains("- **Rel.** (reliability): token accuracy of alt on src, teacher-forced, top-1"))
        #expect(!markdown.contains("Warning"))
    }

    @Test func markdownComparesRunsAndWarnsAboutIncomparableSettings() throws {
        let markdown = SummaryTable.markdown([ReportFixtures.zsre, ReportFixtures.counterfact])
        #expect(markdown.contains("# IBKE evaluation: 2 runs compared"))
        #expect(markdown.contains("| Setting | zsre-single | cf-sequential |"))
        #expect(
            markdown.contains(
                "| Protocol ⚠ | single (one edit at a time, the model restored after each) | sequential of 10, evaluated every 5 edits |"))
        // Union of metrics in display order; the zsRE run has no ES or GE.
        #expect(markdown.contains("| Run | Method | Rel. | Gen. | Loc. | ES | GE | Edit s/case | Eval s/case |"))
        #expect(markdown.contains("| cf-sequential | FT-L | 55.0 | – | – | 60.0 | 622.3 | 2.00 | 0.250 |"))
        // The sequential methods start from different values: a pre-edit row under each.
        #expect(markdown.contains("|  | *FT-M (pre-edit)* | 10.0 | – | – | 30.0 | 625.0 | – | – |"))
        let warning = try #require(markdown.split(separator: "\n").first { $0.hasPrefix("> **Warning:**") })
        for setting in ["Model", "Protocol", "Metric family"] { #expect(warning.contains(setting)) }
        for setting in ["Top-k", "Chat template", "zsRE target", "Seed"] { #expect(!warning.contains(setting)) }
        #expect(markdown.contains("| cf-sequential | FT-M | 10 | 65.0 | 70.0 |"))
        #expect(markdown.contains("- **ES** (efficacy_score): P(new) > P(true) on the prompt"))
    }

    @Test func differentDefinitionsOfOneMetricAreReported() {
        var other = ReportFixtures.zsre
        other.run = "zsre-top5"
        other.metricInfo[0].definition = "token accuracy of alt on src, top-5"
        let markdown = SummaryTable.markdown([ReportFixtures.zsre, other])
        #expect(markdown.contains("Metric reliability is defined differently in zsre-single"))
        #expect(markdown.contains("| Run | Method | Rel. | Gen. | Loc. |"))
    }

    @Test func htmlIsWellFormedSelfContainedAndHasAChartPerMetric() throws {
        let runs = [ReportFixtures.zsre, ReportFixtures.counterfact]
        let html = ReportHTML.document(runs)
        let parsed = try XHTML(html)
        #expect(parsed.root == "html")
        // A bar chart for each of the five metrics; a line chart for ES and Rel., which have curves.
        #expect(parsed.count("svg") == 5 + 2)
        #expect(html.components(separatedBy: "<svg").count - 1 == 7)
        #expect(parsed.count("polyline") == 2 * 2)
        for name in ["FT-L", "FT-M", ReportFixtures.oddName, "zsre-single", "cf-sequential", "Rel.", "GE"] {
            #expect(parsed.text.contains(name), "missing \(name)")
        }
        #expect(html.contains("a&lt;b&amp;&quot;c&quot;"))
        #expect(!html.contains(ReportFixtures.oddName))
        #expect(parsed.text.contains("622.3") && parsed.text.contains("95.4"))
        #expect(parsed.text.contains("Runs differ in settings that make their numbers incomparable"))
        let local = html.replacingOccurrences(of: "http://www.w3.org/1999/xhtml", with: "")
            .replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "")
        for reference in ["http://", "https://", "url(", "@import", "<script", "<link", "src="] {
            #expect(!local.contains(reference), "references \(reference)")
        }
        if let path = ProcessInfo.processInfo.environment["IBKE_REPORT_SAMPLE"] {
            // Lets a reviewer look at the page: IBKE_REPORT_SAMPLE=/tmp/sample.html swift test …
            try Data(html.utf8).write(to: URL(fileURLWithPath: path))
        }
    }

    @Test func singleRunWithoutCurvesHasOnlyBarCharts() throws {
        let parsed = try XHTML(ReportHTML.document([ReportFixtures.zsre]))
        #expect(parsed.count("svg") == 3)
        #expect(parsed.count("polyline") == 0)
        #expect(!parsed.text.contains("Warning"))
    }

    @Test func textFormatting() {
        #expect(ReportText.scaled(0.954) == "95.4")
        #expect(ReportText.scaled(6.22) == "622.0")
        #expect(ReportText.scaled(nil) == "–")
        #expect(ReportText.scaled(.nan) == "–")
        #expect(ReportText.seconds(0.0001) == "<0.001")
        #expect(ReportText.seconds(123.4) == "123")
        #expect(ReportText.xml("x\u{1}'") == "x\u{FFFD}&#39;")
        #expect(ReportText.markdown("ft_l | _x_\nnext") == #"ft_l \| \_x\_ next"#)
    }

    @Test func valueAxisIsPercentUnlessValuesExceedIt() {
        #expect(ValueAxis(values: [95.4, 12]).ticks == [0, 20, 40, 60, 80, 100])
        let fluency = ValueAxis(values: [622.3, 95])
        #expect(fluency.maximum == 800 && fluency.ticks.last == 800)
    }
}

/// The parsed page: fails on any XML well-formedness error, and collects element names and text.
struct XHTML {
    private(set) var root = ""
    private var elements: [String: Int] = [:]
    /// All character data, entity references decoded.
    private(set) var text = ""

    init(_ document: String) throws {
        let collector = Collector()
        let parser = XMLParser(data: Data(document.utf8))
        parser.delegate = collector
        parser.shouldResolveExternalEntities = false
        guard parser.parse() else {
            throw XMLFailure(
                description: "line \(parser.lineNumber), column \(parser.columnNumber): \(String(describing: parser.parserError))")
        }
        root = collector.root ?? ""
        elements = collector.elements
        text = collector.text
    }

    func count(_ element: String) -> Int { elements[element, default: 0] }

    struct XMLFailure: Error, CustomStringConvertible { let description: String }

    private final class Collector: NSObject, XMLParserDelegate {
        var root: String?
        var elements: [String: Int] = [:]
        var text = ""

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
            qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]
        ) {
            if root == nil { root = elementName }
            elements[elementName, default: 0] += 1
            // Attribute values count as text too (titles carry the metric definitions).
            for value in attributeDict.values { text += value + "\n" }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
    }
}
