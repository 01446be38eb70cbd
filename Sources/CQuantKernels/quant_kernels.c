// Portable kernels for every format, and AVX2+FMA+F16C kernels for the formats of the catalogue
// models (Q4_1, Q4_K, Q6_K, Q8_0; AVX-512 for Q4_1 and Q8_0), chosen once at run time from the
// CPU's features: the binary runs on any x86-64 and uses AVX2 or AVX-512 where they exist.
// (Swift SIMD was measured first: its vector integer-to-float conversions compile to scalar
// code, 0.05-0.9 GB/s of Q4_K rows on one core, against 4.5 GB/s for the AVX2 kernel below.)
#include "quant_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define IBKE_X86 1
#endif

// MARK: - Portable

static inline float fp16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do { mantissa <<= 1; e++; } while (!(mantissa & 0x400));
            bits = sign | (uint32_t)(112 - e) << 23 | (mantissa & 0x3FF) << 13;
        }
    } else if (exponent == 31) {
        bits = sign | 0x7F800000 | mantissa << 13;
    } else {
        bits = sign | (exponent + 112) << 23 | mantissa << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float bf16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline void scale_min_k4(const uint8_t *s, int g, int *scale, int *min) {
    if (g < 4) {
        *scale = s[g] & 63;
        *min = s[g + 4] & 63;
    } else {
        int k = g - 4;
        *scale = (s[k + 8] & 15) | ((s[k] >> 2) & 0x30);
        *min = (s[k + 8] >> 4) | ((s[k + 4] >> 2) & 0x30);
    }
}

static float dot_f16(const uint8_t *p, const float *x, int n) {
    float sum = 0;
    for (int i = 0; i < n; i++) sum += fp16(p + 2 * i) * x[i];
    return sum;
}

static float dot_bf16(const uint8_t *p, const float *x, int n) {
    float sum = 0;
    for (int i = 0; i < n; i++) sum += bf16(p + 2 * i) * x[i];
    return sum;
}

static float dot_q8_0(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 34, x += 32) {
        float s = 0;
        for (int i = 0; i < 32; i++) s += (float)(int8_t)p[2 + i] * x[i];
        sum += fp16(p) * s;
    }
    return sum;
}

static float dot_q4_0(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 18, x += 32) {
        float s = 0;
        for (int l = 0; l < 16; l++) s += (float)((p[2 + l] & 15) - 8) * x[l] + (float)((p[2 + l] >> 4) - 8) * x[l + 16];
        sum += fp16(p) * s;
    }
    return sum;
}

static float dot_q4_1(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 20, x += 32) {
        float s = 0, xs = 0;
        for (int l = 0; l < 16; l++) {
            s += (float)(p[4 + l] & 15) * x[l] + (float)(p[4 + l] >> 4) * x[l + 16];
            xs += x[l] + x[l + 16];
        }
        sum += fp16(p) * s + fp16(p + 2) * xs;
    }
    return sum;
}

static float dot_q5_0(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 22, x += 32) {
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        float s = 0;
        for (int l = 0; l < 16; l++) {
            int lo = (p[6 + l] & 15) | (int)((qh >> l) & 1) << 4, hi = (p[6 + l] >> 4) | (int)((qh >> (l + 16)) & 1) << 4;
            s += (float)(lo - 16) * x[l] + (float)(hi - 16) * x[l + 16];
        }
        sum += fp16(p) * s;
    }
    return sum;
}

static float dot_q4_k(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 144, x += 256) {
        float s = 0, m = 0;
        for (int g = 0; g < 8; g++) {
            int scale, min;
            scale_min_k4(p + 4, g, &scale, &min);
            const uint8_t *q = p + 16 + 32 * (g / 2);
            int shift = 4 * (g % 2);
            float gs = 0, gx = 0;
            for (int l = 0; l < 32; l++) {
                gs += (float)((q[l] >> shift) & 15) * x[32 * g + l];
                gx += x[32 * g + l];
            }
            s += (float)scale * gs;
            m += (float)min * gx;
        }
        sum += fp16(p) * s - fp16(p + 2) * m;
    }
    return sum;
}

static float dot_q5_k(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 176, x += 256) {
        float s = 0, m = 0;
        for (int g = 0; g < 8; g++) {
            int scale, min;
            scale_min_k4(p + 4, g, &scale, &min);
            const uint8_t *q = p + 48 + 32 * (g / 2), *qh = p + 16;
            int shift = 4 * (g % 2);
            float gs = 0, gx = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 15) | ((qh[l] >> g) & 1) << 4;
                gs += (float)v * x[32 * g + l];
                gx += x[32 * g + l];
            }
            s += (float)scale * gs;
            m += (float)min * gx;
        }
        sum += fp16(p) * s - fp16(p + 2) * m;
    }
    return sum;
}

static float dot_q6_k(const uint8_t *p, const float *x, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 210, x += 256) {
        float s = 0;
        for (int a = 0; a < 2; a++) {
            for (int group = 0; group < 8; group++) {
                float gs = 0;
                for (int t = 16 * group; t < 16 * group + 16; t++) {
                    int low = (p[64 * a + t % 64] >> (4 * (t / 64))) & 15;
                    int high = (p[128 + 32 * a + t % 32] >> (2 * (t / 32))) & 3;
                    gs += (float)((low | high << 4) - 32) * x[128 * a + t];
                }
                s += (float)(int8_t)p[192 + 8 * a + group] * gs;
            }
        }
        sum += fp16(p + 208) * s;
    }
    return sum;
}

float ibke_quant_dot_portable(int type, const void *row, const float *x, int blocks) {
    const uint8_t *p = row;
    switch (type) {
    case IBKE_QUANT_F16: return dot_f16(p, x, blocks);
    case IBKE_QUANT_BF16: return dot_bf16(p, x, blocks);
    case IBKE_QUANT_Q8_0: return dot_q8_0(p, x, blocks);
    case IBKE_QUANT_Q4_0: return dot_q4_0(p, x, blocks);
    case IBKE_QUANT_Q4_1: return dot_q4_1(p, x, blocks);
    case IBKE_QUANT_Q5_0: return dot_q5_0(p, x, blocks);
    case IBKE_QUANT_Q4_K: return dot_q4_k(p, x, blocks);
    case IBKE_QUANT_Q5_K: return dot_q5_k(p, x, blocks);
    case IBKE_QUANT_Q6_K: return dot_q6_k(p, x, blocks);
    default: return NAN;
    }
}


// MARK: - Dequantization

// Bit-exact with ModelFormats/Dequantize.swift, the reference: the same roundings in the same
// order (products rounded, then the offsets subtracted), so no multiply-add may be contracted.
#pragma STDC FP_CONTRACT OFF

static void dequantize_q8_0(const uint8_t *p, float *y, int blocks) {
    for (int b = 0; b < blocks; b++, p += 34, y += 32) {
        float d = fp16(p);
        for (int i = 0; i < 32; i++) y[i] = (float)(int8_t)p[2 + i] * d;
    }
}

static void dequantize_q4_0(const uint8_t *p, float *y, int blocks) {
    for (int b = 0; b < blocks; b++, p += 18, y += 32) {
        float d = fp16(p);
        for (int l = 0; l < 16; l++) {
            y[l] = d * (float)((p[2 + l] & 15) - 8);
            y[l + 16] = d * (float)((p[2 + l] >> 4) - 8);
        }
    }
}

static void dequantize_q4_1(const uint8_t *p, float *y, int blocks) {
    for (int b = 0; b < blocks; b++, p += 20, y += 32) {
        float d = fp16(p), m = fp16(p + 2);
        for (int l = 0; l < 16; l++) {
            float lo = d * (float)(p[4 + l] & 15), hi = d * (float)(p[4 + l] >> 4);
            y[l] = lo + m;
            y[l + 16] = hi + m;
        }
    }
}

static void dequantize_q5_0(const uint8_t *p, float *y, int blocks) {
    for (int b = 0; b < blocks; b++, p += 22, y += 32) {
        float d = fp16(p);
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        for (int l = 0; l < 16; l++) {
            int lo = (p[6 + l] & 15) | (int)((qh >> l) & 1) << 4, hi = (p[6 + l] >> 4) | (int)((qh >> (l + 16)) & 1) << 4;
            y[l] = d * (float)(lo - 16);
            y[l + 16] = d * (float)(hi - 16);
        }
    }
}

// Q4_K and Q5_K: the same super-block of 8 groups with 6-bit scales and mins; Q5_K adds a fifth
// bit per value (`qh`, 32 bytes before the low nibbles).
static void dequantize_k_quant(const uint8_t *p, float *y, int blocks, int fiveBit) {
    const int size = fiveBit ? 176 : 144, low = fiveBit ? 48 : 16;
    for (int b = 0; b < blocks; b++, p += size, y += 256) {
        float d = fp16(p), dmin = fp16(p + 2);
        for (int g = 0; g < 8; g++) {
            int scale, min;
            scale_min_k4(p + 4, g, &scale, &min);
            float ds = d * (float)scale, dm = dmin * (float)min;
            const uint8_t *q = p + low + 32 * (g / 2), *qh = p + 16;
            int shift = 4 * (g % 2);
            for (int l = 0; l < 32; l++) {
                int code = (q[l] >> shift) & 15;
                if (fiveBit) code |= ((qh[l] >> g) & 1) << 4;
                float v = ds * (float)code;
                y[32 * g + l] = v - dm;
            }
        }
    }
}

static void dequantize_q6_k(const uint8_t *p, float *y, int blocks) {
    for (int b = 0; b < blocks; b++, p += 210, y += 256) {
        float d = fp16(p + 208);
        for (int a = 0; a < 2; a++) {
            for (int group = 0; group < 8; group++) {
                float ds = d * (float)(int8_t)p[192 + 8 * a + group];
                for (int t = 16 * group; t < 16 * group + 16; t++) {
                    int low = (p[64 * a + t % 64] >> (4 * (t / 64))) & 15;
                    int high = (p[128 + 32 * a + t % 32] >> (2 * (t / 32))) & 3;
                    y[128 * a + t] = ds * (float)((low | high << 4) - 32);
                }
            }
        }
    }
}

int ibke_dequantize(int type, const void *row, float *y, int blocks) {
    const uint8_t *p = row;
    switch (type) {
    case IBKE_QUANT_F16: for (int i = 0; i < blocks; i++) y[i] = fp16(p + 2 * i); return 1;
    case IBKE_QUANT_BF16: for (int i = 0; i < blocks; i++) y[i] = bf16(p + 2 * i); return 1;
    case IBKE_QUANT_Q8_0: dequantize_q8_0(p, y, blocks); return 1;
    case IBKE_QUANT_Q4_0: dequantize_q4_0(p, y, blocks); return 1;
    case IBKE_QUANT_Q4_1: dequantize_q4_1(p, y, blocks); return 1;
    case IBKE_QUANT_Q5_0: dequantize_q5_0(p, y, blocks); return 1;
    case IBKE_QUANT_Q4_K: dequantize_k_quant(p, y, blocks, 0); return 1;
    case IBKE_QUANT_Q5_K: dequantize_k_quant(p, y, blocks, 1); return 1;
    case IBKE_QUANT_Q6_K: dequantize_q6_k(p, y, blocks); return 1;
    default: return 0;
    }
}

#pragma STDC FP_CONTRACT ON

// MARK: - Portable, on quantized activations

void ibke_quantize_activations(const float *x, int n, signed char *q, float *scales, float *sums) {
    for (int b = 0; b < n / 32; b++, x += 32, q += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127, inverse = d > 0 ? 1 / d : 0;
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            int v = (int)lrintf(x[i] * inverse);
            q[i] = (signed char)(v > 127 ? 127 : v < -127 ? -127 : v);
            sum += q[i];
        }
        scales[b] = d;
        sums[b] = d * (float)sum;
    }
}

int ibke_quant_has_q8(int type) {
    return type == IBKE_QUANT_Q4_0 || type == IBKE_QUANT_Q4_1 || type == IBKE_QUANT_Q8_0 || type == IBKE_QUANT_Q4_K ||
           type == IBKE_QUANT_Q6_K;
}

static float q8_q8_0(const uint8_t *p, const int8_t *q, const float *d, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 34, q += 32) {
        int s = 0;
        for (int i = 0; i < 32; i++) s += (int8_t)p[2 + i] * q[i];
        sum += fp16(p) * d[b] * (float)s;
    }
    return sum;
}

static float q8_q4_0(const uint8_t *p, const int8_t *q, const float *d, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 18, q += 32) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += ((p[2 + l] & 15) - 8) * q[l] + ((p[2 + l] >> 4) - 8) * q[l + 16];
        sum += fp16(p) * d[b] * (float)s;
    }
    return sum;
}

static float q8_q4_1(const uint8_t *p, const int8_t *q, const float *d, const float *sums, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 20, q += 32) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += (p[4 + l] & 15) * q[l] + (p[4 + l] >> 4) * q[l + 16];
        sum += fp16(p) * d[b] * (float)s + fp16(p + 2) * sums[b];
    }
    return sum;
}

static float q8_q4_k(const uint8_t *p, const int8_t *q, const float *d, const float *sums, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 144, q += 256, d += 8, sums += 8) {
        float s = 0, m = 0;
        for (int g = 0; g < 8; g++) {
            int scale, min;
            scale_min_k4(p + 4, g, &scale, &min);
            const uint8_t *w = p + 16 + 32 * (g / 2);
            int shift = 4 * (g % 2), gs = 0;
            for (int l = 0; l < 32; l++) gs += ((w[l] >> shift) & 15) * q[32 * g + l];
            s += (float)scale * d[g] * (float)gs;
            m += (float)min * sums[g];
        }
        sum += fp16(p) * s - fp16(p + 2) * m;
    }
    return sum;
}

static float q8_q6_k(const uint8_t *p, const int8_t *q, const float *d, int blocks) {
    float sum = 0;
    for (int b = 0; b < blocks; b++, p += 210, q += 256, d += 8) {
        float s = 0;
        for (int a = 0; a < 2; a++) {
            for (int group = 0; group < 8; group++) {
                int gs = 0;
                for (int t = 16 * group; t < 16 * group + 16; t++) {
                    int low = (p[64 * a + t % 64] >> (4 * (t / 64))) & 15;
                    int high = (p[128 + 32 * a + t % 32] >> (2 * (t / 32))) & 3;
                    gs += ((low | high << 4) - 32) * q[128 * a + t];
                }
                s += (float)(int8_t)p[192 + 8 * a + group] * d[(128 * a + 16 * group) / 32] * (float)gs;
            }
        }
        sum += fp16(p + 208) * s;
    }
    return sum;
}

float ibke_quant_dot_q8_portable(int type, const void *row, const signed char *q, const float *scales,
                                 const float *sums, int blocks) {
    const uint8_t *p = row;
    switch (type) {
    case IBKE_QUANT_Q8_0: return q8_q8_0(p, q, scales, blocks);
    case IBKE_QUANT_Q4_0: return q8_q4_0(p, q, scales, blocks);
    case IBKE_QUANT_Q4_1: return q8_q4_1(p, q, scales, sums, blocks);
    case IBKE_QUANT_Q4_K: return q8_q4_k(p, q, scales, sums, blocks);
    case IBKE_QUANT_Q6_K: return q8_q6_k(p, q, scales, blocks);
    default: return NAN;
    }
}

// MARK: - AVX2 + FMA

#ifdef IBKE_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

/// fp16 to float with F16C (one instruction instead of the portable bit manipulation).
AVX2 static inline float fp16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX2 static inline float hsum(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_shuffle_ps(r, r, 1));
    return _mm_cvtss_f32(r);
}

/// 8 bytes (unsigned) at the low half of `v` as floats.
AVX2 static inline __m256 u8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
AVX2 static inline __m256 i8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/// Σ q·x over 16 unsigned bytes `q` and 16 floats at `x`, into `acc`.
AVX2 static inline __m256 fma16_u8(__m128i q, const float *x, __m256 acc) {
    acc = _mm256_fmadd_ps(u8_to_ps(q), _mm256_loadu_ps(x), acc);
    return _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(q, 8)), _mm256_loadu_ps(x + 8), acc);
}

AVX2 static inline __m256 fma16_i8(__m128i q, const float *x, __m256 acc) {
    acc = _mm256_fmadd_ps(i8_to_ps(q), _mm256_loadu_ps(x), acc);
    return _mm256_fmadd_ps(i8_to_ps(_mm_srli_si128(q, 8)), _mm256_loadu_ps(x + 8), acc);
}

/// The fp16 (d, m) pairs at the starts of two blocks as floats: d0 m0 d1 m1.
AVX2 static inline __m128 dm_pair(const uint8_t *p0, const uint8_t *p1) {
    uint32_t a, b;
    memcpy(&a, p0, 4);
    memcpy(&b, p1, 4);
    return _mm_cvtph_ps(_mm_set_epi32(0, 0, (int)b, (int)a));
}

/// The fp16 scales d at the starts of two blocks as floats: d0 d1.
AVX2 static inline __m128 d_pair(const uint8_t *p0, const uint8_t *p1) {
    uint16_t a, b;
    memcpy(&a, p0, 2);
    memcpy(&b, p1, 2);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)b << 16 | a)));
}

/// (0, s[0], 0, s[1]): two blocks' activation sums in the lanes of their offsets m0 and m1.
AVX2 static inline __m128 odd_lanes(const float *s) {
    return _mm_unpacklo_ps(_mm_setzero_ps(), _mm_castpd_ps(_mm_load_sd((const double *)s)));
}

AVX2 static inline float odd_sum(__m128 v) {
    return _mm_cvtss_f32(_mm_add_ss(_mm_shuffle_ps(v, v, 1), _mm_shuffle_ps(v, v, 3)));
}

AVX2 static float avx2_q8_0(const uint8_t *p, const float *x, int blocks) {
    __m256 total = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++, p += 34, x += 32) {
        __m256 acc = fma16_i8(_mm_loadu_si128((const __m128i *)(p + 2)), x, _mm256_setzero_ps());
        acc = fma16_i8(_mm_loadu_si128((const __m128i *)(p + 18)), x + 16, acc);
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p)), acc, total);
    }
    return hsum(total);
}



// The same dot products given the sums of each 32 activations (`xs`, computed once per vector
// rather than once per row): the formats' offset terms become one scalar product per block, and
// the block's products run as two independent FMA chains. Two blocks a step: their four fp16
// scales convert in one instruction instead of four scalar conversions.
AVX2 static float avx2_q4_1_sums(const uint8_t *p, const float *x, const float *xs, int blocks) {
    const __m128i low4 = _mm_set1_epi8(15);
    __m256 total0 = _mm256_setzero_ps(), total1 = _mm256_setzero_ps();
    __m128 offsets = _mm_setzero_ps();
    int b = 0;
    for (; b + 1 < blocks; b += 2, p += 40, x += 64) {
        __m128 dm = dm_pair(p, p + 20);  // d0 m0 d1 m1
        __m128i bytes0 = _mm_loadu_si128((const __m128i *)(p + 4)), bytes1 = _mm_loadu_si128((const __m128i *)(p + 24));
        __m128i lo0 = _mm_and_si128(bytes0, low4), hi0 = _mm_and_si128(_mm_srli_epi16(bytes0, 4), low4);
        __m128i lo1 = _mm_and_si128(bytes1, low4), hi1 = _mm_and_si128(_mm_srli_epi16(bytes1, 4), low4);
        __m256 a0 = fma16_u8(lo0, x, _mm256_setzero_ps()), c0 = fma16_u8(hi0, x + 16, _mm256_setzero_ps());
        __m256 a1 = fma16_u8(lo1, x + 32, _mm256_setzero_ps()), c1 = fma16_u8(hi1, x + 48, _mm256_setzero_ps());
        total0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_add_ps(a0, c0), total0);
        total1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(dm, dm)), _mm256_add_ps(a1, c1), total1);
        offsets = _mm_fmadd_ps(dm, odd_lanes(xs + b), offsets);
    }
    float total = hsum(_mm256_add_ps(total0, total1)) + odd_sum(offsets);
    for (; b < blocks; b++, p += 20, x += 32) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(p + 4));
        __m128i lo = _mm_and_si128(bytes, low4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
        total += fp16c(p) * hsum(fma16_u8(hi, x + 16, fma16_u8(lo, x, _mm256_setzero_ps()))) + fp16c(p + 2) * xs[b];
    }
    return total;
}

AVX2 static float avx2_q4_k_sums(const uint8_t *p, const float *x, const float *xs, int blocks) {
    const __m128i low4 = _mm_set1_epi8(15);
    __m256 total = _mm256_setzero_ps();
    float mins = 0;
    for (int b = 0; b < blocks; b++, p += 144, x += 256, xs += 8) {
        __m256 block = _mm256_setzero_ps();
        float blockMins = 0;
        for (int c = 0; c < 4; c++) {
            int s0, m0, s1, m1;
            scale_min_k4(p + 4, 2 * c, &s0, &m0);
            scale_min_k4(p + 4, 2 * c + 1, &s1, &m1);
            const uint8_t *q = p + 16 + 32 * c;
            const float *xl = x + 64 * c, *xh = xl + 32;
            __m128i b0 = _mm_loadu_si128((const __m128i *)q), b1 = _mm_loadu_si128((const __m128i *)(q + 16));
            __m128i l0 = _mm_and_si128(b0, low4), l1 = _mm_and_si128(b1, low4);
            __m128i h0 = _mm_and_si128(_mm_srli_epi16(b0, 4), low4), h1 = _mm_and_si128(_mm_srli_epi16(b1, 4), low4);
            __m256 lo = _mm256_mul_ps(u8_to_ps(l0), _mm256_loadu_ps(xl));
            __m256 lo2 = _mm256_mul_ps(u8_to_ps(l1), _mm256_loadu_ps(xl + 16));
            __m256 hi = _mm256_mul_ps(u8_to_ps(h0), _mm256_loadu_ps(xh));
            __m256 hi2 = _mm256_mul_ps(u8_to_ps(h1), _mm256_loadu_ps(xh + 16));
            lo = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(l0, 8)), _mm256_loadu_ps(xl + 8), lo);
            lo2 = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(l1, 8)), _mm256_loadu_ps(xl + 24), lo2);
            hi = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(h0, 8)), _mm256_loadu_ps(xh + 8), hi);
            hi2 = _mm256_fmadd_ps(u8_to_ps(_mm_srli_si128(h1, 8)), _mm256_loadu_ps(xh + 24), hi2);
            block = _mm256_fmadd_ps(_mm256_set1_ps((float)s0), _mm256_add_ps(lo, lo2), block);
            block = _mm256_fmadd_ps(_mm256_set1_ps((float)s1), _mm256_add_ps(hi, hi2), block);
            blockMins += (float)m0 * xs[2 * c] + (float)m1 * xs[2 * c + 1];
        }
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p)), block, total);
        mins += fp16c(p + 2) * blockMins;
    }
    return hsum(total) - mins;
}

// Without the sums: they are computed here, for 32 blocks of Q4_1 (one block of Q4_K) at a time.
AVX512 static float avx512_q4_1_sums(const uint8_t *p, const float *x, const float *xs, int blocks);
AVX2 static float block_sums_then(int type, const uint8_t *p, const float *x, int blocks, int level) {
    const int per = type == IBKE_QUANT_Q4_1 ? 32 : 1, elements = type == IBKE_QUANT_Q4_1 ? 32 : 256;
    const int bytes = type == IBKE_QUANT_Q4_1 ? 20 : 144;
    float sums[32], total = 0;
    for (int b = 0; b < blocks; b += per) {
        int n = blocks - b < per ? blocks - b : per;
        const float *xb = x + (size_t)b * elements;
        for (int i = 0; i < n * elements / 32; i++) {
            __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xb + 32 * i), _mm256_loadu_ps(xb + 32 * i + 8)),
                                     _mm256_add_ps(_mm256_loadu_ps(xb + 32 * i + 16), _mm256_loadu_ps(xb + 32 * i + 24)));
            sums[i] = hsum(v);
        }
        const uint8_t *pb = p + (size_t)b * bytes;
        total += type == IBKE_QUANT_Q4_K ? avx2_q4_k_sums(pb, xb, sums, n)
                 : level >= 3            ? avx512_q4_1_sums(pb, xb, sums, n)
                                         : avx2_q4_1_sums(pb, xb, sums, n);
    }
    return total;
}

AVX2 static float avx2_q6_k(const uint8_t *p, const float *x, int blocks) {
    const __m128i low4 = _mm_set1_epi8(15), low2 = _mm_set1_epi8(3), offset = _mm_set1_epi8(32);
    __m256 total = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++, p += 210, x += 256) {
        __m256 block = _mm256_setzero_ps();
        for (int a = 0; a < 2; a++) {
            for (int group = 0; group < 8; group++) {
                int t = 16 * group;
                __m128i ql = _mm_loadu_si128((const __m128i *)(p + 64 * a + t % 64));
                __m128i qh = _mm_loadu_si128((const __m128i *)(p + 128 + 32 * a + t % 32));
                __m128i low = _mm_and_si128(t / 64 ? _mm_srli_epi16(ql, 4) : ql, low4);
                int shift = 2 * (t / 32);
                __m128i high = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(shift)), low2);
                __m128i q = _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), offset);
                __m256 acc = fma16_i8(q, x + 128 * a + t, _mm256_setzero_ps());
                block = _mm256_fmadd_ps(_mm256_set1_ps((float)(int8_t)p[192 + 8 * a + group]), acc, block);
            }
        }
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p + 208)), block, total);
    }
    return hsum(total);
}
/// Σ over 32 lanes of u8 `w` × i8 `x`, as 8 int32 sums.
AVX2 static inline __m256i dot_u8_i8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

/// Σ over 32 lanes of i8 `w` × i8 `x` (maddubs takes one unsigned operand: |w| and x with w's sign).
AVX2 static inline __m256i dot_i8_i8(__m256i w, __m256i x) {
    return dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

AVX2 static float avx2_q8_q8_0(const uint8_t *p, const int8_t *q, const float *d, int blocks) {
    __m256 total = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++, p += 34, q += 32) {
        __m256i s = dot_i8_i8(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_loadu_si256((const __m256i *)q));
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p) * d[b]), _mm256_cvtepi32_ps(s), total);
    }
    return hsum(total);
}

/// The 32 nibbles of 16 bytes as u8 lanes: low nibbles in lanes 0-15, high nibbles in 16-31.
AVX2 static inline __m256i nibbles16(const uint8_t *p) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

AVX2 static float avx2_q8_q4_0(const uint8_t *p, const int8_t *q, const float *d, int blocks) {
    __m256 total = _mm256_setzero_ps();
    const __m256i eight = _mm256_set1_epi8(8);
    for (int b = 0; b < blocks; b++, p += 18, q += 32) {
        __m256i w = _mm256_sub_epi8(nibbles16(p + 2), eight);
        __m256i s = dot_i8_i8(w, _mm256_loadu_si256((const __m256i *)q));
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p) * d[b]), _mm256_cvtepi32_ps(s), total);
    }
    return hsum(total);
}

AVX2 static float avx2_q8_q4_1(const uint8_t *p, const int8_t *q, const float *d, const float *sums, int blocks) {
    __m256 total = _mm256_setzero_ps();
    float offsets = 0;
    for (int b = 0; b < blocks; b++, p += 20, q += 32) {
        __m256i s = dot_u8_i8(nibbles16(p + 4), _mm256_loadu_si256((const __m256i *)q));
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p) * d[b]), _mm256_cvtepi32_ps(s), total);
        offsets += fp16c(p + 2) * sums[b];
    }
    return hsum(total) + offsets;
}

AVX2 static float avx2_q8_q4_k(const uint8_t *p, const int8_t *q, const float *d, const float *sums, int blocks) {
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256 total = _mm256_setzero_ps();
    float mins = 0;
    for (int b = 0; b < blocks; b++, p += 144, q += 256, d += 8, sums += 8) {
        float dd = fp16c(p), dmin = fp16c(p + 2), m = 0;
        __m256 block = _mm256_setzero_ps();
        for (int c = 0; c < 4; c++) {
            int s0, m0, s1, m1;
            scale_min_k4(p + 4, 2 * c, &s0, &m0);
            scale_min_k4(p + 4, 2 * c + 1, &s1, &m1);
            __m256i bytes = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * c));
            __m256i lo = _mm256_and_si256(bytes, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
            __m256i slo = dot_u8_i8(lo, _mm256_loadu_si256((const __m256i *)(q + 64 * c)));
            __m256i shi = dot_u8_i8(hi, _mm256_loadu_si256((const __m256i *)(q + 64 * c + 32)));
            block = _mm256_fmadd_ps(_mm256_set1_ps((float)s0 * d[2 * c]), _mm256_cvtepi32_ps(slo), block);
            block = _mm256_fmadd_ps(_mm256_set1_ps((float)s1 * d[2 * c + 1]), _mm256_cvtepi32_ps(shi), block);
            m += (float)m0 * sums[2 * c] + (float)m1 * sums[2 * c + 1];
        }
        total = _mm256_fmadd_ps(_mm256_set1_ps(dd), block, total);
        mins += dmin * m;
    }
    return hsum(total) - mins;
}

AVX2 static float avx2_q8_q6_k(const uint8_t *p, const int8_t *q, const float *d, int blocks) {
    const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3), offset = _mm256_set1_epi8(32);
    __m256 total = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++, p += 210, q += 256, d += 8) {
        __m256 block = _mm256_setzero_ps();
        for (int a = 0; a < 2; a++) {
            // 128 elements: t = 0-31 low nibbles of ql[0-31] with qh bits 0-1, 32-63 low nibbles
            // of ql[32-63] with bits 2-3, 64-95 high nibbles of ql[0-31] with bits 4-5, 96-127
            // high nibbles of ql[32-63] with bits 6-7.
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(p + 64 * a));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(p + 64 * a + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * a));
            __m256i parts[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4)),
            };
            for (int k = 0; k < 4; k++) {
                // w - 32 as i8 times x: (w)·x − 32·x, with w unsigned in 0-63.
                __m256i x = _mm256_loadu_si256((const __m256i *)(q + 128 * a + 32 * k));
                __m256i products = _mm256_sub_epi16(_mm256_maddubs_epi16(parts[k], x), _mm256_maddubs_epi16(offset, x));
                // Two groups of 16 with their own scales: lanes 0-7 and 8-15 of the i16 products.
                __m256i sums32 = _mm256_madd_epi16(products, _mm256_set1_epi16(1));
                int j0 = 128 * a + 32 * k;
                float s0 = (float)(int8_t)p[192 + j0 / 16], s1 = (float)(int8_t)p[192 + j0 / 16 + 1];
                __m256 scales = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
                block = _mm256_fmadd_ps(_mm256_mul_ps(scales, _mm256_set1_ps(d[j0 / 32])), _mm256_cvtepi32_ps(sums32), block);
            }
        }
        total = _mm256_fmadd_ps(_mm256_set1_ps(fp16c(p + 208)), block, total);
    }
    return hsum(total);
}

// MARK: - AVX-512

// Sixteen lanes a conversion: one vpmovzxbd and one vcvtdq2ps turn 16 codes into floats where
// AVX2 needs two of each, and the scales of two blocks convert together. `ibke bench --kernels
// --threads 1` against the same with IBKE_SIMD=avx2 (8192x8192, 2-vCPU Zen 4 guest): Q4_1 12.7
// against 11.5 Gweights/s, Q8_0 9.3 against 7.8; the default model's decode gained more (its
// rows stay in cache: Docs/quantized.md).

/// Σ over one Q4_1 block's 32 codes (without d and m) times its 32 activations.
AVX512 static inline __m512 q4_1_codes512(const uint8_t *p, const float *x) {
    __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 4)));
    __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(w, _mm512_set1_epi32(15)));
    __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 4));
    return _mm512_fmadd_ps(lo, _mm512_loadu_ps(x), _mm512_mul_ps(hi, _mm512_loadu_ps(x + 16)));
}

AVX512 static float avx512_q4_1_sums(const uint8_t *p, const float *x, const float *xs, int blocks) {
    __m512 total0 = _mm512_setzero_ps(), total1 = _mm512_setzero_ps();
    __m128 offsets = _mm_setzero_ps();
    int b = 0;
    for (; b + 1 < blocks; b += 2, p += 40, x += 64) {
        __m128 dm = dm_pair(p, p + 20);
        total0 = _mm512_fmadd_ps(_mm512_broadcastss_ps(dm), q4_1_codes512(p, x), total0);
        total1 = _mm512_fmadd_ps(_mm512_broadcastss_ps(_mm_movehl_ps(dm, dm)), q4_1_codes512(p + 20, x + 32), total1);
        offsets = _mm_fmadd_ps(dm, odd_lanes(xs + b), offsets);
    }
    float total = _mm512_reduce_add_ps(_mm512_add_ps(total0, total1)) + odd_sum(offsets);
    for (; b < blocks; b++, p += 20, x += 32) total += fp16c(p) * _mm512_reduce_add_ps(q4_1_codes512(p, x)) + fp16c(p + 2) * xs[b];
    return total;
}

/// Σ over one Q8_0 block's 32 codes (without d) times its 32 activations.
AVX512 static inline __m512 q8_0_codes512(const uint8_t *p, const float *x) {
    __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2))));
    __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18))));
    return _mm512_fmadd_ps(lo, _mm512_loadu_ps(x), _mm512_mul_ps(hi, _mm512_loadu_ps(x + 16)));
}

AVX512 static float avx512_q8_0(const uint8_t *p, const float *x, int blocks) {
    __m512 total0 = _mm512_setzero_ps(), total1 = _mm512_setzero_ps();
    int b = 0;
    for (; b + 1 < blocks; b += 2, p += 68, x += 64) {
        __m128 d = d_pair(p, p + 34);
        total0 = _mm512_fmadd_ps(_mm512_broadcastss_ps(d), q8_0_codes512(p, x), total0);
        total1 = _mm512_fmadd_ps(_mm512_broadcastss_ps(_mm_movehdup_ps(d)), q8_0_codes512(p + 34, x + 32), total1);
    }
    float total = _mm512_reduce_add_ps(_mm512_add_ps(total0, total1));
    for (; b < blocks; b++, p += 34, x += 32) total += fp16c(p) * _mm512_reduce_add_ps(q8_0_codes512(p, x));
    return total;
}
#endif

// MARK: - Dispatch

static int simd_level = -1;

int ibke_quant_simd_level(void) {
    int level = __atomic_load_n(&simd_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = 0;
#ifdef IBKE_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) level = 2;
        if (level == 2 && __builtin_cpu_supports("avx512f")) level = 3;
#endif
        // IBKE_SIMD=portable|avx2 caps the level, to measure what each instruction set gives.
        const char *cap = getenv("IBKE_SIMD");
        if (cap && strcmp(cap, "portable") == 0) level = 0;
        if (cap && strcmp(cap, "avx2") == 0 && level > 2) level = 2;
        __atomic_store_n(&simd_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

static int usable(int level) {
    int available = ibke_quant_simd_level();
    return level < available ? level : available;
}

float ibke_quant_dot_at(int level, int type, const void *row, const float *x, int blocks) {
#ifdef IBKE_X86
    level = usable(level);
    if (level >= 3 && type == IBKE_QUANT_Q8_0) return avx512_q8_0(row, x, blocks);
    if (level >= 2) {
        switch (type) {
        case IBKE_QUANT_Q8_0: return avx2_q8_0(row, x, blocks);
        case IBKE_QUANT_Q4_1: return block_sums_then(IBKE_QUANT_Q4_1, row, x, blocks, level);
        case IBKE_QUANT_Q4_K: return block_sums_then(IBKE_QUANT_Q4_K, row, x, blocks, level);
        case IBKE_QUANT_Q6_K: return avx2_q6_k(row, x, blocks);
        default: break;
        }
    }
#endif
    return ibke_quant_dot_portable(type, row, x, blocks);
}

float ibke_quant_dot(int type, const void *row, const float *x, int blocks) {
    return ibke_quant_dot_at(ibke_quant_simd_level(), type, row, x, blocks);
}

float ibke_quant_dot_sums_at(int level, int type, const void *row, const float *x, const float *sums, int blocks) {
#ifdef IBKE_X86
    level = usable(level);
    if (level >= 3 && type == IBKE_QUANT_Q4_1) return avx512_q4_1_sums(row, x, sums, blocks);
    if (level >= 2) {
        switch (type) {
        case IBKE_QUANT_Q4_1: return avx2_q4_1_sums(row, x, sums, blocks);
        case IBKE_QUANT_Q4_K: return avx2_q4_k_sums(row, x, sums, blocks);
        default: break;
        }
    }
#endif
    return ibke_quant_dot_at(level, type, row, x, blocks);
}

float ibke_quant_dot_sums(int type, const void *row, const float *x, const float *sums, int blocks) {
    return ibke_quant_dot_sums_at(ibke_quant_simd_level(), type, row, x, sums, blocks);
}

float ibke_quant_dot_q8(int type, const void *row, const signed char *q, const float *scales, const float *sums,
                        int blocks) {
#ifdef IBKE_X86
    if (ibke_quant_simd_level() >= 2) {
        switch (type) {
        case IBKE_QUANT_Q8_0: return avx2_q8_q8_0(row, (const int8_t *)q, scales, blocks);
        case IBKE_QUANT_Q4_0: return avx2_q8_q4_0(row, (const int8_t *)q, scales, blocks);
        case IBKE_QUANT_Q4_1: return avx2_q8_q4_1(row, (const int8_t *)q, scales, sums, blocks);
        case IBKE_QUANT_Q4_K: return avx2_q8_q4_k(row, (const int8_t *)q, scales, sums, blocks);
        case IBKE_QUANT_Q6_K: return avx2_q8_q6_k(row, (const int8_t *)q, scales, blocks);
        default: break;
        }
    }
#endif
    return ibke_quant_dot_q8_portable(type, row, (const int8_t *)q, scales, sums, blocks);
}
