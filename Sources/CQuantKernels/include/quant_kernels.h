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

/// The same with the portable C kernels only, whatever the CPU (for tests and comparisons).
float ibke_quant_dot_portable(int type, const void *row, const float *x, int blocks);

/// The instruction set the dispatching kernels use on this CPU: 0 portable C, 2 AVX2 and FMA.
int ibke_quant_simd_level(void);

#ifdef __cplusplus
}
#endif
#endif
