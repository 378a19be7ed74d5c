#include "quant_kernels.h"
#include "ckernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

// See quant_kernels.h for the layout. Both paths use the same split of a group's dot
// product, sum_c (s*q_c + m) * x_c = s * sum_c q_c x_c + m * sum_c x_c, so that the inner
// loop only multiplies codes by activations; the per-group sums of x are computed once
// per call and shared by every row.

// ---- portable scalar paths -------------------------------------------------

static inline float half_to_float(uint16_t h) {
    float f;
    moe_f16_to_f32(&h, &f, 1);
    return f;
}

/// Code k of a row that starts on a word boundary. A 3-bit code may straddle two words;
/// no code reads past the row's last word, because rows end on a word boundary.
static inline uint32_t code_at(const uint32_t *row, size_t k, uint32_t bits) {
    size_t bit = k * bits;
    size_t word = bit >> 5;
    unsigned shift = (unsigned)(bit & 31);
    uint64_t window = row[word];
    if (shift + bits > 32) window |= (uint64_t)row[word + 1] << 32;
    return (uint32_t)(window >> shift) & ((1u << bits) - 1u);
}

/// Sums of x over each group: the coefficient of the group's minimum.
static float *group_sums(const float *x, size_t cols, size_t group_size) {
    size_t groups = cols / group_size;
    float *sums = malloc((groups ? groups : 1) * sizeof(float));
    if (!sums) abort();
    for (size_t g = 0; g < groups; g++) {
        float s = 0;
        for (size_t c = 0; c < group_size; c++) s += x[g * group_size + c];
        sums[g] = s;
    }
    return sums;
}

void moe_quant_gemv_portable(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                             uint32_t bits, size_t group_size, size_t rows, size_t cols,
                             const float *x, float *y) {
    size_t words_per_row = cols * bits / 32;
    size_t groups = cols / group_size;
    float *xsum = group_sums(x, cols, group_size);
    for (size_t r = 0; r < rows; r++) {
        const uint32_t *row = packed + r * words_per_row;
        float total = 0;
        for (size_t g = 0; g < groups; g++) {
            float dot = 0;
            for (size_t c = g * group_size; c < (g + 1) * group_size; c++) dot += (float)code_at(row, c, bits) * x[c];
            total += half_to_float(scales[r * groups + g]) * dot + half_to_float(minimums[r * groups + g]) * xsum[g];
        }
        y[r] = total;
    }
    free(xsum);
}

void moe_quant_dequantize_rows_portable(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                        uint32_t bits, size_t group_size, size_t cols,
                                        size_t row_start, size_t row_count, float *out) {
    size_t words_per_row = cols * bits / 32;
    size_t groups = cols / group_size;
    for (size_t i = 0; i < row_count; i++) {
        size_t r = row_start + i;
        const uint32_t *row = packed + r * words_per_row;
        for (size_t g = 0; g < groups; g++) {
            float s = half_to_float(scales[r * groups + g]);
            float m = half_to_float(minimums[r * groups + g]);
            for (size_t c = g * group_size; c < (g + 1) * group_size; c++)
                out[i * cols + c] = s * (float)code_at(row, c, bits) + m;
        }
    }
}

// ---- AVX2 / FMA / F16C paths -----------------------------------------------

// Eight consecutive codes always occupy exactly `bits` whole bytes (8 * bits bits), so a
// chunk of eight starts on a byte boundary: load those bytes, broadcast them to all lanes,
// and shift lane i right by i * bits. `bits` is a constant after inlining, so the memcpy
// is a plain load of 2, 3 or 4 bytes and never reads past the chunk.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 codes8(const uint8_t *chunk, uint32_t bits, __m256i shifts, __m256i mask) {
    if (bits == 8) return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)chunk)));
    uint32_t v = 0;
    memcpy(&v, chunk, bits);
    __m256i lanes = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(lanes, mask));
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i lane_shifts(uint32_t bits) {
    return _mm256_setr_epi32(0, (int)bits, (int)(2 * bits), (int)(3 * bits), (int)(4 * bits), (int)(5 * bits),
                             (int)(6 * bits), (int)(7 * bits));
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float horizontal_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void gemv_avx2_bits(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                  const uint32_t bits, size_t group_size, size_t rows, size_t cols,
                                  const float *x, const float *xsum, float *y) {
    const __m256i shifts = lane_shifts(bits);
    const __m256i mask = _mm256_set1_epi32((int)((1u << bits) - 1u));
    size_t words_per_row = cols * bits / 32;
    size_t groups = cols / group_size;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)(packed + r * words_per_row);
        const uint16_t *row_scales = scales + r * groups, *row_minimums = minimums + r * groups;
        __m256 total = _mm256_setzero_ps();
        float minimum_term = 0;
        for (size_t g = 0; g < groups; g++) {
            size_t base = g * group_size;
            // Two accumulators hide the FMA latency; group_size is a multiple of 32.
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            for (size_t c = base; c < base + group_size; c += 16) {
                acc0 = _mm256_fmadd_ps(codes8(row + c / 8 * bits, bits, shifts, mask), _mm256_loadu_ps(x + c), acc0);
                acc1 = _mm256_fmadd_ps(codes8(row + (c + 8) / 8 * bits, bits, shifts, mask), _mm256_loadu_ps(x + c + 8), acc1);
            }
            total = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(row_scales[g])), _mm256_add_ps(acc0, acc1), total);
            minimum_term += _cvtsh_ss(row_minimums[g]) * xsum[g];
        }
        y[r] = horizontal_sum(total) + minimum_term;
    }
}

__attribute__((target("avx2,fma,f16c")))
static void gemv_avx2(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                      uint32_t bits, size_t group_size, size_t rows, size_t cols, const float *x, float *y) {
    float *xsum = group_sums(x, cols, group_size);
    switch (bits) {  // one specialised copy per width, so shifts and loads are constants
    case 2: gemv_avx2_bits(packed, scales, minimums, 2, group_size, rows, cols, x, xsum, y); break;
    case 3: gemv_avx2_bits(packed, scales, minimums, 3, group_size, rows, cols, x, xsum, y); break;
    case 4: gemv_avx2_bits(packed, scales, minimums, 4, group_size, rows, cols, x, xsum, y); break;
    case 8: gemv_avx2_bits(packed, scales, minimums, 8, group_size, rows, cols, x, xsum, y); break;
    default: abort();
    }
    free(xsum);
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void dequantize_avx2_bits(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                        const uint32_t bits, size_t group_size, size_t cols,
                                        size_t row_start, size_t row_count, float *out) {
    const __m256i shifts = lane_shifts(bits);
    const __m256i mask = _mm256_set1_epi32((int)((1u << bits) - 1u));
    size_t words_per_row = cols * bits / 32;
    size_t groups = cols / group_size;
    for (size_t i = 0; i < row_count; i++) {
        size_t r = row_start + i;
        const uint8_t *row = (const uint8_t *)(packed + r * words_per_row);
        float *dst = out + i * cols;
        for (size_t g = 0; g < groups; g++) {
            __m256 s = _mm256_set1_ps(_cvtsh_ss(scales[r * groups + g]));
            __m256 m = _mm256_set1_ps(_cvtsh_ss(minimums[r * groups + g]));
            for (size_t c = g * group_size; c < (g + 1) * group_size; c += 8)
                _mm256_storeu_ps(dst + c, _mm256_fmadd_ps(codes8(row + c / 8 * bits, bits, shifts, mask), s, m));
        }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void dequantize_avx2(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                            uint32_t bits, size_t group_size, size_t cols,
                            size_t row_start, size_t row_count, float *out) {
    switch (bits) {
    case 2: dequantize_avx2_bits(packed, scales, minimums, 2, group_size, cols, row_start, row_count, out); break;
    case 3: dequantize_avx2_bits(packed, scales, minimums, 3, group_size, cols, row_start, row_count, out); break;
    case 4: dequantize_avx2_bits(packed, scales, minimums, 4, group_size, cols, row_start, row_count, out); break;
    case 8: dequantize_avx2_bits(packed, scales, minimums, 8, group_size, cols, row_start, row_count, out); break;
    default: abort();
    }
}

// ---- dispatch --------------------------------------------------------------

int moe_quant_has_simd(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached;
}

/// The SIMD paths handle group sizes that are multiples of 16 (the supported ones are 32,
/// 64 and 128); anything else takes the portable path rather than misbehaving.
static int simd_applies(uint32_t bits, size_t group_size) {
    return moe_quant_has_simd() && group_size % 16 == 0 && (bits == 2 || bits == 3 || bits == 4 || bits == 8);
}

void moe_quant_gemv(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                    uint32_t bits, size_t group_size, size_t rows, size_t cols,
                    const float *x, float *y) {
    if (simd_applies(bits, group_size)) {
        gemv_avx2(packed, scales, minimums, bits, group_size, rows, cols, x, y);
    } else {
        moe_quant_gemv_portable(packed, scales, minimums, bits, group_size, rows, cols, x, y);
    }
}

void moe_quant_dequantize_rows(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                               uint32_t bits, size_t group_size, size_t cols,
                               size_t row_start, size_t row_count, float *out) {
    if (simd_applies(bits, group_size)) {
        dequantize_avx2(packed, scales, minimums, bits, group_size, cols, row_start, row_count, out);
    } else {
        moe_quant_dequantize_rows_portable(packed, scales, minimums, bits, group_size, cols, row_start, row_count, out);
    }
}
