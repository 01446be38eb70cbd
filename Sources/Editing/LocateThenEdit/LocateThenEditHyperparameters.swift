import ModelFormats
import Models

/// What ROME, MEMIT and AlphaEdit set alike, under the reference implementations' key names:
/// the value optimisation, the layer its loss reads, the context templates' seed.
protocol LocateThenEditHyperparameters {
    var vLossLayer: Int { get set }
    var optimization: ValueOptimizationSettings { get set }
    var seed: UInt64 { get set }
}

extension LocateThenEditHyperparameters {
    /// Reads `v_loss_layer` (checked with the edited `layers`), the value optimisation's keys,
    /// `seed` and `fact_token`, and ignores the references' module and statistics keys and
    /// `methodKeys`.
    mutating func readShared(
        _ reader: inout HyperparameterReader, layers: [Int], layerCount: Int, ignoring methodKeys: String...
    ) throws {
        vLossLayer = try reader.int("v_loss_layer", default: vLossLayer)
        try reader.checkLayers(layers + [vLossLayer], layerCount: layerCount)
        guard vLossLayer == layerCount - 1 else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "v_loss_layer",
                expected: "\(layerCount - 1), the last layer (the logits)")
        }
        optimization.steps = try reader.int("v_num_grad_steps", default: optimization.steps, in: 1...1000)
        try optimization.read(&reader)
        seed = UInt64(try reader.int("seed", default: Int(seed)))
        let factToken = try reader.string("fact_token", default: "subject_last")
        guard factToken == "subject_last" else {
            throw EditorError.invalidHyperparameter(
                file: reader.file, key: "fact_token", expected: "subject_last (the only strategy implemented)")
        }
        reader.ignoreReferenceKeys(["rewrite_module_tmp", "mom2_dataset", "mom2_n_samples", "mom2_dtype", "stats_dir"] + methodKeys)
    }

    /// `layers`, the shared keys and `methodKeys` (between them, in the order of the references' files).
    func sharedJSON(layers: [Int], _ methodKeys: JSONObject) -> JSONObject {
        let o = optimization
        var object: JSONObject = [
            "layers": .array(layers.map { .int($0) }), "v_loss_layer": .int(vLossLayer), "v_num_grad_steps": .int(o.steps),
            "v_lr": .double(o.learningRate), "v_weight_decay": .double(o.weightDecay),
            "clamp_norm_factor": .double(o.clampNormFactor), "kl_factor": .double(o.klFactor),
            "v_loss_threshold": .double(o.lossThreshold), "v_first_token_weight": .double(o.firstTokenWeight),
        ]
        if o.promptVariants > 0 { object.updateValue(.int(o.promptVariants), forKey: "prompt_variants") }
        if o.stopOnEveryContext { object.updateValue(.bool(true), forKey: "v_stop_every_context") }
        for (key, value) in methodKeys { object.updateValue(value, forKey: key) }
        object.updateValue(.string("subject_last"), forKey: "fact_token")
        object.updateValue(.int(Int(seed)), forKey: "seed")
        return object
    }

    /// The optimisation of the value at `point` of `layer`, for `method`'s errors.
    func valueOptimization(at point: HookPoint, layer: Int, method: String) -> ValueOptimization {
        ValueOptimization(point: point, layer: layer, settings: optimization, method: method)
    }
}
