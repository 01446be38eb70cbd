import Foundation

/// Row-wise elementwise kernels of the transformer forward pass, on raw row-major buffers.
///
/// Each takes `rows` rows of `width` contiguous floats; rows may be strided (`ld`). They run
/// single-threaded per call: callers parallelise over rows with ``parallelFor(_:dynamic:_:)`` when
/// the work is large enough to pay for it.
public enum Kernels {
    /// RMSNorm: `y = x / sqrt(mean(x²) + eps) · weight` (Llama, Qwen2). In place allowed.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, ldx: Int,
        weight: UnsafePointer<Float>, eps: Float,
        into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        for r in 0..<rows {
            let xr = x + r * ldx
            let yr = y + r * ldy
            let meanSquare = MatMul.dot(xr, xr, width) / Float(width)
            let scale = 1 / (meanSquare + eps).squareRoot()
            for i in 0..<width { yr[i] = (xr[i] * scale) * weight[i] }
        }
    }

    /// LayerNorm: `y = (x − mean) / sqrt(var + eps) · weight + bias` (GPT-2). In place allowed.
    public static func layerNorm(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, ldx: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, eps: Float,
        into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        for r in 0..<rows {
            let xr = x + r * ldx
            let yr = y + r * ldy
            var sum: Float = 0
            for i in 0..<width { sum += xr[i] }
            let mean = sum / Float(width)
            var variance: Float = 0
            for i in 0..<width {
                let d = xr[i] - mean
                variance += d * d
            }
            variance /= Float(width)
            let scale = 1 / (variance + eps).squareRoot()
            if let bias {
                for i in 0..<width { yr[i] = (xr[i] - mean) * scale * weight[i] + bias[i] }
            } else {
                for i in 0..<width { yr[i] = (xr[i] - mean) * scale * weight[i] }
            }
        }
    }

    /// In-place softmax over `count` floats; returns the log-sum-exp.
    @discardableResult
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) -> Float {
        let (maxValue, sum) = exponentiateShifted(x, count: count)
        let inverse = 1 / sum
        mapSIMD(x, count: count) { $0 * inverse }
        return maxValue + logf(sum)
    }

    /// In place `x ← e^(x − max x)`, the softmax before its normalisation; returns the
    /// maximum and the sum. Attention divides its `[rows, D]` output by the sum instead of
    /// the `[rows, keys]` probabilities: one pass over the scores fewer.
    @inline(__always)
    public static func exponentiateShifted(_ x: UnsafeMutablePointer<Float>, count: Int) -> (max: Float, sum: Float) {
        let maxValue = maximum(x, count: count)
        return (maxValue, mapSIMD(x, count: count) { VectorMath.expNonPositive($0 - maxValue) })
    }

    /// The largest of `count` floats (−inf for none).
    public static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        let raw = UnsafeRawPointer(x)
        var lanes = SIMD16<Float>(repeating: -.infinity)
        var i = 0
        while i + 16 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            lanes.replace(with: v, where: v .> lanes)  // a masked select; `pointwiseMax` is scalarised
            i += 16
        }
        var result = lanes.max()
        while i < count {
            result = max(result, x[i])
            i += 1
        }
        return result
    }

    /// Applies `f` to `count` floats in place, 16 lanes at a time (the tail padded with
    /// zeros); returns the sum of the results.
    @inline(__always)
    @discardableResult
    public static func mapSIMD(
        _ x: UnsafeMutablePointer<Float>, count: Int, _ f: (SIMD16<Float>) -> SIMD16<Float>
    ) -> Float {
        let raw = UnsafeMutableRawPointer(x)
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let v = f(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
            raw.storeBytes(of: v, toByteOffset: i * 4, as: SIMD16<Float>.self)
            acc += v
            i += 16
        }
        var total = acc.sum()
        if i < count {
            var tail = SIMD16<Float>()
            for j in 0..<(count - i) { tail[j] = x[i + j] }
            let v = f(tail)
            for j in 0..<(count - i) {
                x[i + j] = v[j]
                total += v[j]
            }
        }
        return total
    }

    /// `log Σ exp(x)` over `count` floats, stable.
    public static func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var maxValue = -Float.infinity
        for i in 0..<count { maxValue = max(maxValue, x[i]) }
        if maxValue == -.infinity { return maxValue }
        var sum: Double = 0
        for i in 0..<count { sum += Double(expf(x[i] - maxValue)) }
        return maxValue + Float(log(sum))
    }

    /// SwiGLU: `out[i] = silu(gate[i]) · up[i]`, with `silu(g) = g / (1 + e^(−g))`.
    /// `out` may alias `gate`.
    public static func swiglu(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let g = UnsafeRawPointer(gate)
        let u = UnsafeRawPointer(up)
        let o = UnsafeMutableRawPointer(out)
        var i = 0
        while i + 16 <= count {
            let gv = g.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            let uv = u.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            o.storeBytes(of: gv / (1 + VectorMath.exp(-gv)) * uv, toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            let gi = gate[i]
            out[i] = gi / (1 + expf(-gi)) * up[i]
            i += 1
        }
    }

    /// GELU, tanh approximation (GPT-2's `gelu_new`), in place; `tanh(y) = 1 − 2/(e^(2y) + 1)`.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.7978845608028654  // sqrt(2/π)
        mapSIMD(x, count: count) { v in
            let y = c * (v + 0.044715 * v * v * v)
            let t = 1 - 2 / (VectorMath.exp(2 * y) + 1)
            return 0.5 * v * (1 + t)
        }
    }

    /// `y += a·x` over `count` floats.
    @inline(__always)
    public static func addScaled(
        _ x: UnsafePointer<Float>, _ a: Float, into y: UnsafeMutablePointer<Float>, count: Int
    ) {
        let xr = UnsafeRawPointer(x)
        let yr = UnsafeMutableRawPointer(y)
        var i = 0
        while i + 16 <= count {
            let v =
                yr.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                + xr.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * a
            yr.storeBytes(of: v, toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            y[i] += a * x[i]
            i += 1
        }
    }

    /// `y += x` over `count` floats.
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }
}

/// Rotary position embedding tables and application (HF `rotate_half` pairing: dimension `i`
/// rotates with `i + D/2`). GGUF Llama checkpoints, whose q/k rows llama.cpp permuted for
/// adjacent pairing, are un-permuted at load so one convention serves every format.
public struct RotaryEmbedding: Sendable {
    /// Inverse frequencies, `D/2` of them.
    public let inverseFrequencies: [Float]
    public let headDim: Int
    /// Multiplier on cos/sin (YaRN-style attention factor; 1 for default and Llama-3 RoPE).
    public let attentionScaling: Float

    public init(inverseFrequencies: [Float], headDim: Int, attentionScaling: Float = 1) {
        self.inverseFrequencies = inverseFrequencies
        self.headDim = headDim
        self.attentionScaling = attentionScaling
    }

    /// Default RoPE: `invFreq[i] = base^(−2i/D)`, computed as transformers does (float32 of
    /// `1 / base ** (arange(0, D, 2) / D)` done in float64 on int64 → float).
    public static func standard(headDim: Int, base: Double) -> [Float] {
        (0..<(headDim / 2)).map { i in Float(1.0 / pow(base, Double(2 * i) / Double(headDim))) }
    }

    /// Llama-3 frequency scaling (transformers `_compute_llama3_parameters`).
    public static func llama3(
        headDim: Int, base: Double, factor: Double, lowFrequencyFactor: Double,
        highFrequencyFactor: Double, originalMaxPositions: Double
    ) -> [Float] {
        let lowWavelength = originalMaxPositions / lowFrequencyFactor
        let highWavelength = originalMaxPositions / highFrequencyFactor
        return standard(headDim: headDim, base: base).map { f32 in
            let f = Double(f32)
            let wavelength = 2 * Double.pi / f
            if wavelength < highWavelength { return f32 }
            if wavelength > lowWavelength { return Float(f / factor) }
            let smooth =
                (originalMaxPositions / wavelength - lowFrequencyFactor)
                / (highFrequencyFactor - lowFrequencyFactor)
            return Float((1 - smooth) * f / factor + smooth * f)
        }
    }

    /// cos and sin for `position`, each `D/2` values (float32, as PyTorch computes
    /// `position · invFreq` in float32 then cos/sin).
    @inline(__always)
    public func angles(position: Int, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        let p = Float(position)
        for i in 0..<(headDim / 2) {
            let a = p * inverseFrequencies[i]
            cos[i] = Foundation.cos(a) * attentionScaling
            sin[i] = Foundation.sin(a) * attentionScaling
        }
    }

    /// Rotates `heads` heads of `headDim` values in place, stored with stride `headDim`.
    @inline(__always)
    public func apply(
        _ x: UnsafeMutablePointer<Float>, heads: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        rotate(x, heads: heads, cos: cos, sin: sin, direction: 1)
    }

    /// Rotates each pair `(i, i + D/2)` by the angle (`direction` 1) or its opposite (−1).
    @inline(__always)
    func rotate(
        _ x: UnsafeMutablePointer<Float>, heads: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, direction: Float
    ) {
        let half = headDim / 2
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<half {
                let a = v[i]
                let b = v[i + half]
                let s = direction * sin[i]
                v[i] = a * cos[i] - b * s
                v[i + half] = b * cos[i] + a * s
            }
        }
    }
}
