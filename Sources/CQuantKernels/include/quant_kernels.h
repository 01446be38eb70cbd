// Dot products of GGUF quantized weight rows with float32 vectors, without dequantizing the
// rows to memory. Block layouts are ggml's (ggml-common.h); ModelFormats/Dequantize.swift
// documents each one and is the reference the tests hold these kernels to.
#ifndef IBKE_QUANT_KERNELS_H
#define IBKE_QUANT_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// The block formats, numbered as ggml's types.
enum {
    IBKE_QUANT_F16 = 1, IBKE_QUANT_Q4_0 = 2, IBKE_QUANT_Q4_1 = 3, IBKE_QUANT_Q5_0 = 6, IBKE_QUANT_Q8_0 = 8,
    IBKE_QUANT_Q4_K = 12, IBKE_QUANT_Q5_K = 13, IBKE_QUANT_Q6_K = 14, IBKE_QUANT_BF16 = 30,
};

/// Σ w·x over `blocks` consecutive blocks of `type` at `row` and as many elements at `x`.
/// Returns NaN for a type these kernels do not have.
float ibke_quant_dot(int type, const void *row, const float *x, int blocks);

/// ``ibke_quant_dot`` given `sums[b]`, the sum of `x[32b ..< 32b + 32]` for every 32 elements:
/// faster for the formats whose blocks carry an offset (Q4_1, Q4_K), the same call otherwise.
float ibke_quant_dot_sums(int type, const void *row, const float *x, const float *sums, int blocks);

/// The same with the portable C kernels only, whatever the CPU (for tests and comparisons).
float ibke_quant_dot_portable(int type, const void *row, const float *x, int blocks);

/// Writes the `blocks · blockSize` values of `blocks` blocks of `type` at `row` to `y`, exactly
/// as the reference dequantizer does (bit for bit). Returns 0 for a type without a kernel.
int ibke_dequantize(int type, const void *row, float *y, int blocks);

/// The instruction set the dispatching kernels use on this CPU: 0 portable C, 2 AVX2 and FMA,
/// 3 AVX-512F as well. The environment variable IBKE_SIMD=portable or avx2 caps it.
int ibke_quant_simd_level(void);

/// ``ibke_quant_dot`` and ``ibke_quant_dot_sums`` with the kernels of at most `level` (capped at
/// what the CPU has), so that tests can hold every instruction set to the reference.
float ibke_quant_dot_at(int level, int type, const void *row, const float *x, int blocks);
float ibke_quant_dot_sums_at(int level, int type, const void *row, const float *x, const float *sums, int blocks);

/// Quantizes `n` floats (a multiple of 32) for the integer kernels, as llama.cpp's Q8 blocks:
/// per 32 elements a scale `scales[b] = max|x| / 127`, the int8 values `q`, and `sums[b]`, the
/// block's sum of the quantized values times its scale (for the formats' offset terms).
void ibke_quantize_activations(const float *x, int n, signed char *q, float *scales, float *sums);

/// Whether ``ibke_quant_dot_q8`` has a kernel for `type`.
int ibke_quant_has_q8(int type);

/// Σ w·x̂ over `blocks` blocks of `type` at `row`, with x̂ the activations quantized by
/// ``ibke_quantize_activations`` (from the first element of the row's span): integer products
/// of the weights' and the activations' codes, scaled per block. NaN for a type without one.
float ibke_quant_dot_q8(int type, const void *row, const signed char *q, const float *scales, const float *sums,
                        int blocks);

/// The same with the portable C kernels only.
float ibke_quant_dot_q8_portable(int type, const void *row, const signed char *q, const float *scales,
                                 const float *sums, int blocks);

#ifdef __cplusplus
}
#endif
#endif
