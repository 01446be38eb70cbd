import Foundation
import ModelFormats
import Models
import TensorCore

/// The `config.json` of a model loaded from GGUF: the hyperparameters IBKE runs it with, in
/// the keys of its family's transformers config class.
enum HuggingFaceConfigWriter {
    static func config(_ model: LanguageModel, precision: ModelExport.Precision) throws -> JSONValue {
        let c = model.config
        let file = model.url.lastPathComponent
        var json = JSONObject()
        func set(_ key: String, _ value: JSONValue) { json.updateValue(value, forKey: key) }
        set("architectures", .array([.string(c.architecture.huggingFaceClass)]))
        set("model_type", .string(c.architecture.modelType))
        do {
            for (key, value) in try c.architecture.huggingFaceConfig(c) { set(key, value) }
        } catch let error as ArchitectureError {
            throw ExportError.unsupported(file: file, detail: error.description)
        }
        if let scaling = try RopeScalingFit.scaling(model) { set("rope_scaling", scaling) }
        set("vocab_size", .int(c.vocabularySize))
        if let bos = model.tokenizer.bosTokenID { set("bos_token_id", .int(bos)) }
        if let eos = model.tokenizer.eosTokenID { set("eos_token_id", .int(eos)) }
        set("torch_dtype", .string(precision == .f16 ? "float16" : "float32"))
        return .object(json)
    }
}

/// Llama 3 RoPE scaling recovered from a GGUF's `rope_freqs.weight`, which llama.cpp's converter
/// computes from `rope_scaling` and stores instead of it.
///
/// The divisors fix the scaling only up to an equivalence: the Llama 3 formula depends on
/// `original_max_position_embeddings`, `low_freq_factor` and `high_freq_factor` only through two
/// combinations, so `low_freq_factor` is set to 1 and the other two solved for (Llama 3.1's own
/// values come back exactly when enough frequencies are in the smoothed band). The result is
/// accepted only if transformers' formula, run on it, gives the frequencies the model runs with.
enum RopeScalingFit {
    /// `rope_scaling` with `low_freq_factor` 1.
    struct Parameters: Equatable {
        var factor: Double, highFrequencyFactor: Double, originalMaxPositions: Double
    }

    /// The `rope_scaling` of a GGUF model with `rope_freqs.weight`, nil for one without.
    static func scaling(_ model: LanguageModel) throws -> JSONValue? {
        let c = model.config
        guard let gguf = model.ggufFile, gguf.shape(of: "rope_freqs.weight") != nil,
            case .rotary(let theta, let frequencies) = c.positions
        else { return nil }
        let divisors = try gguf.readFloats("rope_freqs.weight").map(Double.init)
        guard (divisors.max() ?? 1) > 1 else { return nil }
        guard let p = fit(divisors: divisors, headDim: c.headDim, theta: theta, frequencies: frequencies) else {
            throw ExportError.unsupported(
                file: model.url.lastPathComponent,
                detail: "rope_freqs.weight does not follow Llama 3 RoPE scaling, which config.json could express")
        }
        return .object([
            "rope_type": .string("llama3"), "factor": .double(p.factor), "low_freq_factor": .double(1),
            "high_freq_factor": .double(p.highFrequencyFactor),
            "original_max_position_embeddings": .double(p.originalMaxPositions),
        ])
    }

    /// Parameters with which transformers' Llama 3 formula gives `frequencies` (to 1e-6), or nil.
    static func fit(divisors: [Double], headDim: Int, theta: Double, frequencies: [Float]) -> Parameters? {
        let factor = JSONValue.shortestDecimal(Float(divisors.max() ?? 1))
        // s(x) = A·x − B for x = 1/wavelength: 1 and above where frequencies are kept, 0 and below
        // where they are divided by `factor`, in between for the smoothed band.
        let x = RotaryEmbedding.standard(headDim: headDim, base: theta).map { Double($0) / (2 * Double.pi) }
        let close = { (a: Double, b: Double) in abs(a - b) <= 1e-6 * b }
        var kept: [Double] = []
        var divided: [Double] = []
        var band: [(x: Double, s: Double)] = []
        for (xi, d) in zip(x, divisors) {
            if close(d, 1) {
                kept.append(xi)
            } else if close(d, factor) {
                divided.append(xi)
            } else {
                band.append((xi, (1 / d - 1 / factor) / (1 - 1 / factor)))
            }
        }
        let slope: Double
        if band.count >= 2, let first = band.first, let last = band.last {
            slope = (first.s - last.s) / (first.x - last.x)
        } else if let point = band.first {
            // One point in the band: the least slope that keeps the others on their sides.
            let slopes = kept.min().map { [(1 - point.s) / ($0 - point.x)] } ?? []
            let more = divided.max().map { [point.s / (point.x - $0)] } ?? []
            guard let steepest = (slopes + more).max() else { return nil }
            slope = steepest
        } else if let high = kept.min(), let low = divided.max() {
            slope = 1 / (high - low)
        } else {
            return nil
        }
        guard let anchor = band.first ?? divided.max().map({ (x: $0, s: 0) }) else { return nil }
        let intercept = slope * anchor.x - anchor.s
        guard slope > 0, intercept > 0 else { return nil }
        // A = old / (high − low) and B = low / (high − low), with low = 1.
        let exact = Parameters(factor: factor, highFrequencyFactor: 1 + 1 / intercept, originalMaxPositions: slope / intercept)
        // Round numbers when they do as well (a context length is an integer).
        var rounded = exact
        rounded.originalMaxPositions = exact.originalMaxPositions.rounded()
        rounded.highFrequencyFactor = (exact.highFrequencyFactor * 1e4).rounded() / 1e4
        return [rounded, exact].first { p in
            let recomputed = RotaryEmbedding.llama3(
                headDim: headDim, base: theta, factor: p.factor, lowFrequencyFactor: 1,
                highFrequencyFactor: p.highFrequencyFactor, originalMaxPositions: p.originalMaxPositions)
            return zip(recomputed, frequencies).allSatisfy { abs($0 - $1) <= 1e-6 * $1 }
        }
    }
}
