#include "quant_kernels.h"
#include "ckernels.h"

#include <immintrin.h>
#include "kernel_helpers.h"
#include <stdlib.h>
#include <string.h>

// See quant_kernels.h for the layout. Both paths use the same split of a group's dot
// product, sum_c (s*q_c + m) * x_c = s * sum_c q_c x_c + m * sum_c x_c, so that the inner
// loop only multiplies codes by activations; the per-group sums of x are computed once
// per call and shared by every row.

// ---- portable scalar paths -------------------------------------------------

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
// and shift lane i right by i * bits. `load_bytes` (>= bits, at most 4) is a constant after
// inlining, so the memcpy is one plain load; bytes beyond the chunk's own are shifted and
// masked away, but callers only load more than `bits` bytes where that memory exists.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 codes8(const uint8_t *chunk, uint32_t bits, size_t load_bytes, __m256i shifts, __m256i mask) {
    if (bits == 8) return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)chunk)));
    uint32_t v = 0;
    memcpy(&v, chunk, load_bytes);
    __m256i lanes = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(lanes, mask));
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i lane_shifts(uint32_t bits) {
    return _mm256_setr_epi32(0, (int)bits, (int)(2 * bits), (int)(3 * bits), (int)(4 * bits), (int)(5 * bits),
                             (int)(6 * bits), (int)(7 * bits));
}

// 3-bit codes do not split into whole bytes, so each chunk of eight codes (3 bytes) takes the
// broadcast-and-shift route. Loading 4 bytes instead of 3 makes that a single load straight
// into the broadcast; the extra byte is always the next chunk's or the next row's, except
// for the matrix's very last chunk, so the last row is run with exact 3-byte loads.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void gemv_avx2_3bit_rows(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                       size_t group_size, size_t row_begin, size_t row_end, size_t cols,
                                       const size_t load_bytes, const float *x, const float *xsum, float *y) {
    const uint32_t bits = 3;
    const __m256i shifts = lane_shifts(bits);
    const __m256i mask = _mm256_set1_epi32(7);
    size_t bytes_per_row = cols * bits / 8;
    size_t groups = cols / group_size;
    for (size_t r = row_begin; r < row_end; r++) {
        const uint8_t *row = (const uint8_t *)packed + r * bytes_per_row;
        const uint16_t *row_scales = scales + r * groups, *row_minimums = minimums + r * groups;
        __m256 total = _mm256_setzero_ps();
        float minimum_term = 0;
        for (size_t g = 0; g < groups; g++) {
            // Four accumulators hide the FMA latency; group_size is a multiple of 32.
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (size_t c = g * group_size; c < (g + 1) * group_size; c += 32) {
                const uint8_t *b = row + c / 8 * bits;
                a0 = _mm256_fmadd_ps(codes8(b, bits, 4, shifts, mask), _mm256_loadu_ps(x + c), a0);
                a1 = _mm256_fmadd_ps(codes8(b + 3, bits, 4, shifts, mask), _mm256_loadu_ps(x + c + 8), a1);
                a2 = _mm256_fmadd_ps(codes8(b + 6, bits, 4, shifts, mask), _mm256_loadu_ps(x + c + 16), a2);
                a3 = _mm256_fmadd_ps(codes8(b + 9, bits, load_bytes, shifts, mask), _mm256_loadu_ps(x + c + 24), a3);
            }
            __m256 sum = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
            total = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(row_scales[g])), sum, total);
            minimum_term += _cvtsh_ss(row_minimums[g]) * xsum[g];
        }
        y[r] = horizontal_sum(total) + minimum_term;
    }
}

__attribute__((target("avx2,fma,f16c")))
static void gemv_avx2_3bit(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                           size_t group_size, size_t rows, size_t cols, const float *x, const float *xsum, float *y) {
    if (rows == 0) return;
    gemv_avx2_3bit_rows(packed, scales, minimums, group_size, 0, rows - 1, cols, 4, x, xsum, y);
    gemv_avx2_3bit_rows(packed, scales, minimums, group_size, rows - 1, rows, cols, 3, x, xsum, y);
}

// Widths that divide 8 (2, 4, 8) have a cheaper unpacking: widen 8 bytes to 8 lanes at once
// (one byte per lane) and peel the byte's codes off with one shift and mask each. Lane i then
// holds code per_byte*i + j in step j, so the activations are read in that order from a copy
// of x permuted once per call (`byte_order_x`), rather than reordering codes in the loop.
// Per 8 codes this is about 3-4 vector operations against the general path's 5-6, and the
// kernel is bound by these operations, not by memory. Each step covers 32 codes with four
// independent accumulators; `bits` is a constant after inlining, so only one branch remains.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i widen8(const uint8_t *bytes) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)bytes));
}

#define QUANT_FMA(acc, codes, offset) \
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(codes), _mm256_loadu_ps(xp + (offset)), acc)

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void gemv_avx2_bytewise(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                      const uint32_t bits, size_t group_size, size_t rows, size_t cols,
                                      const float *xp, const float *xsum, float *y) {
    const __m256i mask = _mm256_set1_epi32((int)((1u << bits) - 1u));
    size_t bytes_per_row = cols * bits / 8;
    size_t groups = cols / group_size;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)packed + r * bytes_per_row;
        const uint16_t *row_scales = scales + r * groups, *row_minimums = minimums + r * groups;
        __m256 total = _mm256_setzero_ps();
        float minimum_term = 0;
        for (size_t g = 0; g < groups; g++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (size_t c = g * group_size; c < (g + 1) * group_size; c += 32) {
                const uint8_t *b = row + c * bits / 8;
                if (bits == 8) {          // 4 x 8 bytes, one code each
                    QUANT_FMA(a0, widen8(b), c);
                    QUANT_FMA(a1, widen8(b + 8), c + 8);
                    QUANT_FMA(a2, widen8(b + 16), c + 16);
                    QUANT_FMA(a3, widen8(b + 24), c + 24);
                } else if (bits == 4) {   // 2 x 8 bytes, two codes each
                    __m256i v = widen8(b), w = widen8(b + 8);
                    QUANT_FMA(a0, _mm256_and_si256(v, mask), c);
                    QUANT_FMA(a1, _mm256_srli_epi32(v, 4), c + 8);
                    QUANT_FMA(a2, _mm256_and_si256(w, mask), c + 16);
                    QUANT_FMA(a3, _mm256_srli_epi32(w, 4), c + 24);
                } else {                  // 2 bits: 8 bytes, four codes each
                    __m256i v = widen8(b);
                    QUANT_FMA(a0, _mm256_and_si256(v, mask), c);
                    QUANT_FMA(a1, _mm256_and_si256(_mm256_srli_epi32(v, 2), mask), c + 8);
                    QUANT_FMA(a2, _mm256_and_si256(_mm256_srli_epi32(v, 4), mask), c + 16);
                    QUANT_FMA(a3, _mm256_srli_epi32(v, 6), c + 24);
                }
            }
            __m256 sum = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
            total = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(row_scales[g])), sum, total);
            minimum_term += _cvtsh_ss(row_minimums[g]) * xsum[g];
        }
        y[r] = horizontal_sum(total) + minimum_term;
    }
}

#undef QUANT_FMA

/// x reordered for gemv_avx2_bytewise: within each run of 8*per_byte values, position
/// 8*j + i holds x[per_byte*i + j].
static float *byte_order_x(const float *x, size_t cols, uint32_t bits) {
    size_t per_byte = 8 / bits, chunk = 8 * per_byte;
    float *xp = malloc((cols ? cols : 1) * sizeof(float));
    if (!xp) abort();
    for (size_t base = 0; base < cols; base += chunk)
        for (size_t j = 0; j < per_byte; j++)
            for (size_t i = 0; i < 8; i++) xp[base + 8 * j + i] = x[base + per_byte * i + j];
    return xp;
}

__attribute__((target("avx2,fma,f16c")))
static void gemv_avx2(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                      uint32_t bits, size_t group_size, size_t rows, size_t cols, const float *x, float *y) {
    float *xsum = group_sums(x, cols, group_size);
    float *xp = bits == 2 || bits == 4 ? byte_order_x(x, cols, bits) : NULL;
    switch (bits) {  // one specialised copy per width, so shifts, masks and loads are constants
    case 2: gemv_avx2_bytewise(packed, scales, minimums, 2, group_size, rows, cols, xp, xsum, y); break;
    case 3: gemv_avx2_3bit(packed, scales, minimums, group_size, rows, cols, x, xsum, y); break;
    case 4: gemv_avx2_bytewise(packed, scales, minimums, 4, group_size, rows, cols, xp, xsum, y); break;
    case 8: gemv_avx2_bytewise(packed, scales, minimums, 8, group_size, rows, cols, x, xsum, y); break;
    default: abort();
    }
    free(xp);
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
                _mm256_storeu_ps(dst + c, _mm256_fmadd_ps(codes8(row + c / 8 * bits, bits, bits, shifts, mask), s, m));
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

/// The SIMD paths handle group sizes that are multiples of 32 (the supported ones are 32,
/// 64 and 128); anything else takes the portable path rather than misbehaving.
static int simd_applies(uint32_t bits, size_t group_size) {
    return moe_quant_has_simd() && group_size % 32 == 0 && (bits == 2 || bits == 3 || bits == 4 || bits == 8);
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
