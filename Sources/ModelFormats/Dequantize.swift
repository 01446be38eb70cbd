import TensorCore

// Dequantization kernels, bit-exact against gguf-py 0.19.0 (`gguf.quants.dequantize`).
//
// Each kernel follows the numpy code's float32 operations one for one: fp16 scales are widened to
// float32 first (so products of scales are float32, never float16), and `d * q + m` is a rounded
// multiply followed by a rounded add. Swift never contracts `a * b + c` into a fused
// multiply-add, so writing the expressions plainly reproduces numpy's results bit for bit.
// Block layouts are those of ggml-common.h; the comment on each kernel gives the element order.

/// Tensors below this many elements are converted on the calling thread; larger ones are split
/// into chunks of about this size and spread over ``parallelFor(_:dynamic:_:)``.
let dequantizeChunkElements = 1 << 16

extension GGMLType {
    /// Converts `blockCount` blocks of this type at `source` to float32 at `destination`.
    ///
    /// The caller guarantees `source` holds `blockCount * bytesPerBlock` readable bytes and
    /// `destination` `blockCount * blockSize` floats, and that the type ``canDequantize``.
    func dequantizeBlocks(
        _ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, blockCount: Int
    ) {
        switch self {
        case .f32:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: blockCount * 4)
        case .f16: dequantizeF16(source, destination, blockCount)
        case .bf16: dequantizeBF16(source, destination, blockCount)
        case .q8_0: dequantizeQ8_0(source, destination, blockCount)
        case .q4_0: dequantizeQ4_0(source, destination, blockCount)
        case .q4_1: dequantizeQ4_1(source, destination, blockCount)
        case .q5_0: dequantizeQ5_0(source, destination, blockCount)
        case .q5_1: dequantizeQ5_1(source, destination, blockCount)
        case .q2_K: dequantizeQ2_K(source, destination, blockCount)
        case .q3_K: dequantizeQ3_K(source, destination, blockCount)
        case .q4_K: dequantizeQ4_K(source, destination, blockCount)
        case .q5_K: dequantizeQ5_K(source, destination, blockCount)
        case .q6_K: dequantizeQ6_K(source, destination, blockCount)
        default:
            preconditionFailure("dequantizeBlocks called for \(name), which canDequantize excludes")
        }
    }

    /// Converts `elementCount` elements at `source` to float32, in parallel chunks of about
    /// `chunkElements` elements (whole blocks) when the tensor is large.
    ///
    /// Each chunk is computed independently by the same scalar code, so the result does not
    /// depend on the thread count or chunk size.
    func dequantize(
        _ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>,
        elementCount: Int, chunkElements: Int = dequantizeChunkElements
    ) {
        precondition(canDequantize, "cannot dequantize \(name)")
        precondition(
            elementCount % blockSize == 0, "\(elementCount) elements is not whole \(name) blocks")
        let blocks = elementCount / blockSize
        let blocksPerChunk = max(1, chunkElements / blockSize)
        let chunks = (blocks + blocksPerChunk - 1) / blocksPerChunk
        if chunks <= 1 {
            dequantizeBlocks(source, into: destination, blockCount: blocks)
            return
        }
        let stride = bytesPerBlock
        let size = blockSize
        parallelFor(chunks) { chunk in
            let first = chunk * blocksPerChunk
            let count = min(blocks - first, blocksPerChunk)
            dequantizeBlocks(
                source + first * stride, into: destination + first * size, blockCount: count)
        }
    }
}

// MARK: - Byte access

/// A little-endian fp16 at `offset`, widened to float32 exactly (as numpy's `astype(np.float32)`).
@inline(__always)
private func f16(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    HalfPrecision.f16ToFloat(
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

@inline(__always)
private func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
    p.load(fromByteOffset: offset, as: UInt8.self)
}

// MARK: - Plain types

private func dequantizeF16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { dst[i] = f16(src, 2 * i) }
}

/// numpy: `(int16 << 16).view(float32)`, i.e. the bf16 bits become the top half of a float32.
private func dequantizeBF16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n {
        let bits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        dst[i] = HalfPrecision.bf16ToFloat(bits)
    }
}

// MARK: - 32-element blocks

/// Q8_0, 34 bytes: fp16 d, int8 qs[32]. y[i] = qs[i] * d.
private func dequantizeQ8_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 34
        let out = dst + b * 32
        let d = f16(block, 0)
        for i in 0..<32 {
            out[i] = Float(Int8(bitPattern: byte(block, 2 + i))) * d
        }
    }
}

/// Q4_0, 18 bytes: fp16 d, qs[16]. y[l] = d * ((qs[l] & 15) - 8), y[l+16] = d * ((qs[l] >> 4) - 8).
private func dequantizeQ4_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 18
        let out = dst + b * 32
        let d = f16(block, 0)
        for l in 0..<16 {
            let q = byte(block, 2 + l)
            out[l] = d * Float(Int32(q & 0x0F) - 8)
            out[l + 16] = d * Float(Int32(q >> 4) - 8)
        }
    }
}

/// Q4_1, 20 bytes: fp16 d, fp16 m, qs[16]. y = d * q + m (rounded multiply, then rounded add).
private func dequantizeQ4_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 20
        let out = dst + b * 32
        let d = f16(block, 0)
        let m = f16(block, 2)
        for l in 0..<16 {
            let q = byte(block, 4 + l)
            out[l] = d * Float(q & 0x0F) + m
            out[l + 16] = d * Float(q >> 4) + m
        }
    }
}

/// Q5_0, 22 bytes: fp16 d, uint32 qh, qs[16]. Element j takes its fifth bit from bit j of qh;
/// y = d * (q - 16).
private func dequantizeQ5_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 22
        let out = dst + b * 32
        let d = f16(block, 0)
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        for l in 0..<16 {
            let q = byte(block, 6 + l)
            let lo = Int32(q & 0x0F) | Int32((qh >> UInt32(l)) & 1) << 4
            let hi = Int32(q >> 4) | Int32((qh >> UInt32(l + 16)) & 1) << 4
            out[l] = d * Float(lo - 16)
            out[l + 16] = d * Float(hi - 16)
        }
    }
}

/// Q5_1, 24 bytes: fp16 d, fp16 m, uint32 qh, qs[16]. y = d * q + m.
private func dequantizeQ5_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 24
        let out = dst + b * 32
        let d = f16(block, 0)
        let m = f16(block, 2)
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        for l in 0..<16 {
            let q = byte(block, 8 + l)
            let lo = UInt32(q & 0x0F) | ((qh >> UInt32(l)) & 1) << 4
            let hi = UInt32(q >> 4) | ((qh >> UInt32(l + 16)) & 1) << 4
            out[l] = d * Float(lo) + m
            out[l + 16] = d * Float(hi) + m
        }
    }
}

// MARK: - K-quants (256-element super-blocks)

/// Q2_K, 84 bytes: scales[16] (low nibble scale, high nibble min), qs[64], fp16 d, fp16 dmin.
/// Element j = 128a + 32s + l is (qs[32a + l] >> 2s) & 3 in group j / 16;
/// y = (d * sc) * q - (dmin * m).
private func dequantizeQ2_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 84
        let out = dst + b * 256
        let d = f16(block, 80)
        let dmin = f16(block, 82)
        for a in 0..<2 {
            for s in 0..<4 {
                let shift = UInt8(2 * s)
                for half in 0..<2 {
                    let j0 = 128 * a + 32 * s + 16 * half
                    let sc = byte(block, j0 / 16)
                    let dl = d * Float(sc & 0x0F)
                    let ml = dmin * Float(sc >> 4)
                    for l in (16 * half)..<(16 * half + 16) {
                        let q = (byte(block, 16 + 32 * a + l) >> shift) & 3
                        out[128 * a + 32 * s + l] = dl * Float(q) - ml
                    }
                }
            }
        }
    }
}

/// Q3_K, 110 bytes: hmask[32], qs[64], scales[12] (16 packed 6-bit scales), fp16 d.
/// Element j = 128a + 32s + l has low bits (qs[32a + l] >> 2s) & 3 and, with b = j / 32, high
/// bit (hmask[l] >> b) & 1, which *subtracts* 4 when clear; y = (d * (sc - 32)) * q.
private func dequantizeQ3_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 110
        let out = dst + b * 256
        let d = f16(block, 108)
        for g in 0..<16 {
            let low = (byte(block, 96 + g % 8) >> UInt8(4 * (g / 8))) & 0x0F
            let high = (byte(block, 104 + g % 4) >> UInt8(2 * (g / 4))) & 0x03
            let dl = d * Float(Int32(low | high << 4) - 32)
            let a = g / 8
            let shift = UInt8(2 * ((g / 2) % 4))
            let hshift = UInt8(g / 2)
            for j in (16 * g)..<(16 * g + 16) {
                let l = j % 32
                let q = Int32((byte(block, 32 + 32 * a + l) >> shift) & 3)
                let hbit = Int32((byte(block, l) >> hshift) & 1)
                out[j] = dl * Float(q - ((hbit ^ 1) << 2))
            }
        }
    }
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block, packed in 12 bytes
/// (gguf-py `Q4_K.get_scale_min`, ggml `get_scale_min_k4`).
@inline(__always)
private func scaleMinK4(_ s: UnsafeRawPointer, _ g: Int) -> (scale: UInt8, min: UInt8) {
    if g < 4 {
        return (byte(s, g) & 0x3F, byte(s, g + 4) & 0x3F)
    }
    let k = g - 4
    let scale = (byte(s, k + 8) & 0x0F) | ((byte(s, k) >> 2) & 0x30)
    let min = (byte(s, k + 8) >> 4) | ((byte(s, k + 4) >> 2) & 0x30)
    return (scale, min)
}

/// Q4_K, 144 bytes: fp16 d, fp16 dmin, scales[12], qs[128]. Group g = 2c + h (32 elements) is
/// (qs[32c + l] >> 4h) & 15; y = (d * sc[g]) * q - (dmin * m[g]).
private func dequantizeQ4_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 144
        let out = dst + b * 256
        let d = f16(block, 0)
        let dmin = f16(block, 2)
        for g in 0..<8 {
            let (sc, m) = scaleMinK4(block + 4, g)
            let ds = d * Float(sc)
            let dm = dmin * Float(m)
            let c = g / 2
            let shift = UInt8(4 * (g % 2))
            for l in 0..<32 {
                let q = (byte(block, 16 + 32 * c + l) >> shift) & 0x0F
                out[32 * g + l] = ds * Float(q) - dm
            }
        }
    }
}

/// Q5_K, 176 bytes: fp16 d, fp16 dmin, scales[12], qh[32], qs[128]. As Q4_K, with fifth bit
/// (qh[l] >> g) & 1 for element 32g + l.
private func dequantizeQ5_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 176
        let out = dst + b * 256
        let d = f16(block, 0)
        let dmin = f16(block, 2)
        for g in 0..<8 {
            let (sc, m) = scaleMinK4(block + 4, g)
            let ds = d * Float(sc)
            let dm = dmin * Float(m)
            let c = g / 2
            let shift = UInt8(4 * (g % 2))
            for l in 0..<32 {
                let low = (byte(block, 48 + 32 * c + l) >> shift) & 0x0F
                let high = (byte(block, 16 + l) >> UInt8(g)) & 1
                out[32 * g + l] = ds * Float(low | high << 4) - dm
            }
        }
    }
}

/// Q6_K, 210 bytes: ql[128], qh[64], int8 scales[16], fp16 d. Element j = 128a + t has low
/// nibble (ql[64a + t % 64] >> 4(t / 64)) & 15 and high bits (qh[32a + t % 32] >> 2(t / 32)) & 3;
/// y = (d * scale[j / 16]) * (q - 32).
private func dequantizeQ6_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for b in 0..<n {
        let block = src + b * 210
        let out = dst + b * 256
        let d = f16(block, 208)
        for a in 0..<2 {
            for group in 0..<8 {
                let j0 = 128 * a + 16 * group
                let ds = d * Float(Int8(bitPattern: byte(block, 192 + j0 / 16)))
                for t in (16 * group)..<(16 * group + 16) {
                    let low = (byte(block, 64 * a + t % 64) >> UInt8(4 * (t / 64))) & 0x0F
                    let high = (byte(block, 128 + 32 * a + t % 32) >> UInt8(2 * (t / 32))) & 0x03
                    let q = Int32(low | high << 4) - 32
                    out[128 * a + t] = ds * Float(q)
                }
            }
        }
    }
}
