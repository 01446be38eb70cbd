import Foundation
import Testing

@testable import Evaluation

/// The test bundle's copy of `Tests/EvaluationTests/Fixtures/datasets/<name>`.
func datasetFixture(_ name: String) throws -> String {
    let root = try #require(
        Bundle.module.url(forResource: "Fixtures", withExtension: nil),
        "Fixtures folder missing from the test bundle")
    return root.appendingPathComponent("datasets").appendingPathComponent(name).path
}

/// Loads a fixture as `kind`.
func loadFixture(
    _ kind: BenchmarkKind, _ name: String, zsreTarget: ZsRETarget = .alt, limit: Int? = nil
)
    throws -> Dataset
{
    try Dataset.load(DatasetSpec(kind: kind, path: datasetFixture(name)), zsreTarget: zsreTarget, limit: limit)
}

/// Writes `text` to a fresh temporary file called `name`, loads it as `kind`, and returns the
/// error's message together with the file's path (the load must fail).
func loadError(
    _ kind: BenchmarkKind, _ text: String, name: String = "bad.json",
    zsreTarget: ZsRETarget = .alt
) throws -> (message: String, path: String) {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-datasets-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent(name)
    try Data(text.utf8).write(to: url)
    do {
        let dataset = try Dataset.load(DatasetSpec(kind: kind, path: url.path), zsreTarget: zsreTarget)
        Issue.record("expected an error, loaded \(dataset.cases.count) cases")
        return ("", url.path)
    } catch {
        return (String(describing: error), url.path)
    }
}

/// Writes `text` to a temporary file and loads it (the load must succeed).
func loadText(
    _ kind: BenchmarkKind, _ text: String, name: String = "data.json", zsreTarget: ZsRETarget = .alt
)
    throws -> Dataset
{
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ibke-datasets-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent(name)
    try Data(text.utf8).write(to: url)
    return try Dataset.load(DatasetSpec(kind: kind, path: url.path), zsreTarget: zsreTarget)
}

/// The probes of `evalCase` with `role`.
func probes(_ evalCase: EvalCase, _ role: Probe.Role) -> [Probe] {
    evalCase.probes.filter { $0.role == role }
}
