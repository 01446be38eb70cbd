import Foundation
import ModelFormats
import Testing

@testable import Editing

@Suite struct HyperparameterFileTests {
    @Test func yamlSubsetParsesReferenceConfigs() throws {
        let yaml = """
            alg_name: "FT"   # a comment
            layers: [21]
            num_steps: 25
            lr: 5e-4
            norm_constraint: false
            objective_optimization: 'target_new'
            rewrite_module_tmp: model.layers.{}.mlp.down_proj
            extra:
              - 1
              - 2
            """
        let value = try YAMLFile.parse(yaml, file: "ft.yaml")
        let object = try #require(value.objectValue)
        #expect(object["alg_name"] == .string("FT"))
        #expect(object["layers"] == .array([.int(21)]))
        #expect(object["lr"] == .double(5e-4))
        #expect(object["norm_constraint"] == .bool(false))
        #expect(object["objective_optimization"] == .string("target_new"))
        #expect(object["rewrite_module_tmp"] == .string("model.layers.{}.mlp.down_proj"))
        #expect(object["extra"] == .array([.int(1), .int(2)]))
    }

    /// What the hand-written subset got wrong: yes/no read as booleans, inline lists split on
    /// every comma. And what a YAML reader must refuse: aliases (a small file expanding into a
    /// large one), deep nesting, malformed text.
    @Test func yamlReadsAsTheReferencesMeanIt() throws {
        let object = try #require(
            try YAMLFile.parse(
                "a: yes\nb: no\nc: on\nd: [\"x, y\", z]\ne: true\nf:\n  g: 1\n",
                file: "x.yaml"
            ).objectValue)
        #expect(object["a"] == .string("yes") && object["b"] == .string("no") && object["c"] == .string("on"))
        #expect(object["d"] == .array([.string("x, y"), .string("z")]))
        #expect(object["e"] == .bool(true))
        #expect(object["f"] == .object(["g": .int(1)]))
        // Aliases mean what YAML says; one that expands past the value budget is refused.
        #expect(try YAMLFile.parse("a: &x [1, 2]\nb: *x\n", file: "x.yaml").objectValue?["b"] == .array([.int(1), .int(2)]))
        var laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1..<8 { laughs += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        for bad in [
            laughs, String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
            "a: [1, 2\n", "a: 99999999999999999999999\n",
        ] {
            #expect(throws: EditorError.self, "\(bad.prefix(20))") { try YAMLFile.parse(bad, file: "x.yaml") }
        }
    }

    @Test func fineTuningReadsReferenceKeysAndRejectsTyposAndBadLayers() throws {
        var reader = HyperparameterReader(
            object: [
                "layers": .array([.int(3)]), "num_steps": .int(7), "lr": .double(1e-3),
                "norm_constraint": .bool(false), "rewrite_module_tmp": .string("model.layers.{}.mlp.down_proj"),
                "device": .int(0),
            ],
            file: "ft.json")
        let h = try FineTuning.Hyperparameters(reading: &reader, objective: .targetNew, layerCount: 4)
        #expect(h.layers == [3] && h.steps == 7 && h.learningRate == 1e-3 && h.normConstraint == nil)
        #expect(h.module == .feedForwardDown && h.objective == .targetNew)

        var typo = HyperparameterReader(object: ["num_step": .int(7)], file: "ft.json")
        #expect(throws: EditorError.self) { try FineTuning.Hyperparameters(reading: &typo, objective: .targetNew, layerCount: 4) }
        var deep = HyperparameterReader(object: ["layers": .array([.int(21)])], file: "ft.json")
        #expect(throws: EditorError.layerOutOfRange(file: "ft.json", layer: 21, layers: 4)) {
            try FineTuning.Hyperparameters(reading: &deep, objective: .promptLast, layerCount: 4)
        }
    }

    /// A layer listed twice would give one matrix two updates: refused by every method that reads layers.
    @Test func layersListedTwiceAreRefused() throws {
        let twice: JSONObject = ["layers": .array([.int(1), .int(1)])]
        let expected = EditorError.invalidHyperparameter(file: "h.yaml", key: "layers", expected: "distinct layers, found [1, 1]")
        var ft = HyperparameterReader(object: twice, file: "h.yaml")
        #expect(throws: expected) { try FineTuning.Hyperparameters(reading: &ft, objective: .targetNew, layerCount: 4) }
        var memit = HyperparameterReader(object: twice, file: "h.yaml")
        #expect(throws: expected) {
            try MassEditingHyperparameters(reading: &memit, layerCount: 4, feedForwardSize: 128, alphaEdit: false)
        }
        let config = try TestModels.tinyLlama().config
        var hypernetwork = HyperparameterReader(object: twice, file: "h.yaml")
        #expect(throws: expected) { try HypernetworkSettings(reading: &hypernetwork, design: .mend, config: config) }
    }

    /// A count so large that the run would never end (a mutated `num_steps: 300000000` once ran
    /// FT for hours) is refused by name.
    /// Integers are parsed by the project, not by Yams, whose sexagesimal form (`a:b`) trapped
    /// on overflow (found by the hparams fuzz target: `-1818177111787817817:1`).
    @Test func integersOfEveryFormAndNoTrap() throws {
        let object = try #require(
            try YAMLFile.parse("a: 12\nb: -0x1f\nc: 0o17\nd: 1_000\ne: -9223372036854775808\n", file: "i.yaml").objectValue)
        #expect(object["a"] == .int(12) && object["b"] == .int(-31) && object["c"] == .int(15) && object["d"] == .int(1000))
        #expect(object["e"] == .int(Int.min))
        for bad in ["x: -1818177111787817817:1\n", "x: 9223372036854775808\n", "x: 190:20:30\n"] {
            #expect(throws: EditorError.self, "\(bad)") { try YAMLFile.parse(bad, file: "x.yaml") }
        }
    }

    @Test func stepCountsAreBounded() throws {
        var ft = HyperparameterReader(object: ["layers": .array([.int(1)]), "num_steps": .int(300_000_000)], file: "ft.yaml")
        #expect(
            throws: EditorError.invalidHyperparameter(
                file: "ft.yaml", key: "num_steps",
                expected: "an integer from 1 to 1000, found 300000000")
        ) {
            try FineTuning.Hyperparameters(reading: &ft, objective: .targetNew, layerCount: 4)
        }
        var memit = HyperparameterReader(object: ["v_num_grad_steps": .int(-5)], file: "m.yaml")
        #expect(
            throws: EditorError.invalidHyperparameter(
                file: "m.yaml", key: "v_num_grad_steps",
                expected: "an integer from 1 to 1000, found -5")
        ) {
            try MassEditingHyperparameters(reading: &memit, layerCount: 4, feedForwardSize: 128, alphaEdit: false)
        }
        let config = try TestModels.tinyLlama().config
        var hypernetwork = HyperparameterReader(object: ["rank": .int(1 << 40)], file: "h.yaml")
        #expect(throws: EditorError.self) { try HypernetworkSettings(reading: &hypernetwork, design: .mend, config: config) }
    }

    @Test func defaultsFollowTheDepthRule() {
        #expect(FineTuning.Hyperparameters.defaults(.promptLast, layerCount: 30).layers == [20])
        #expect(FineTuning.Hyperparameters.defaults(.promptLast, layerCount: 30).normConstraint == 5e-4)
        #expect(FineTuning.Hyperparameters.defaults(.targetNew, layerCount: 30).normConstraint == nil)
        #expect(FineTuning.Hyperparameters.defaults(.targetNew, layerCount: 2).layers == [1])
    }

    @Test func jsonWriterRoundTrips() throws {
        let value: JSONValue = .object(["a": .array([.int(1), .double(2.5)]), "b": .string("q\"\n\u{1}é"), "c": .null])
        for indent in [0, 2] {
            let text = value.serialized(indent: indent)
            #expect(try JSONValue.parse(Data(text.utf8)) == value)
        }
    }
}

@Suite struct CommittedHyperparameterTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Hyperparameters")

    /// The models with committed files: depth and MLP width, which the defaults follow.
    struct Model: Sendable, CustomTestStringConvertible {
        let file: String, layerCount: Int, feedForwardSize: Int
        var testDescription: String { file }
        static let all = [
            Model(file: "SmolLM2-135M", layerCount: 30, feedForwardSize: 1536),
            Model(file: "Qwen2.5-Coder-0.5B", layerCount: 24, feedForwardSize: 4864),
            Model(file: "Gemma3-270M", layerCount: 18, feedForwardSize: 2048),
        ]
    }

    /// `Hyperparameters/METHOD/MODEL.yaml`, nil when the method has no file for that model.
    static func reader(_ method: String, _ model: Model) throws -> HyperparameterReader? {
        let url = folder.appendingPathComponent("\(method)/\(model.file).yaml")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try HyperparameterReader(contentsOf: url)
    }

    @Test func everyModelHasItsFiles() throws {
        for method in ["ROME", "MEMIT", "AlphaEdit", "FT-M"] {
            for model in Model.all {
                #expect(try Self.reader(method, model) != nil, "\(method)/\(model.file).yaml")
            }
        }
    }

    /// The committed files say what the built-in defaults are for each model's depth.
    @Test(arguments: Model.all)
    func committedFilesEqualTheDefaults(_ model: Model) throws {
        for (folder, objective) in [("FT-L", FineTuning.Objective.promptLast), ("FT-M", .targetNew)] {
            guard var reader = try Self.reader(folder, model) else { continue }
            let read = try FineTuning.Hyperparameters(reading: &reader, objective: objective, layerCount: model.layerCount)
            #expect(read == .defaults(objective, layerCount: model.layerCount), "\(folder)")
        }
        if var rome = try Self.reader("ROME", model) {
            #expect(try ROME.Hyperparameters(reading: &rome, layerCount: model.layerCount) == .defaults(layerCount: model.layerCount))
        }
        for (folder, alpha) in [("MEMIT", false), ("AlphaEdit", true)] {
            guard var r = try Self.reader(folder, model) else { continue }
            let read = try MassEditingHyperparameters(
                reading: &r, layerCount: model.layerCount,
                feedForwardSize: model.feedForwardSize, alphaEdit: alpha)
            #expect(read == .defaults(layerCount: model.layerCount, feedForwardSize: model.feedForwardSize), "\(folder)")
        }
    }
}
