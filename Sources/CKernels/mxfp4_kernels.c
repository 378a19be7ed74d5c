#include "mxfp4_kernels.h"

#include <immintrin.h>
#include <math.h>
#include "kernel_helpers.h"

// See mxfp4_kernels.h for the layout.

/// FP4 E2M1 codes as floats (bit 3 is the sign).
static const float fp4_values[16] = {
    0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

/// An E8M0 scale byte as the power of two it stands for.
static inline float e8m0_scale(uint8_t s) { return ldexpf(1.0f, (int)s - 127); }

void moe_mxfp4_decode_rows(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, float *out) {
    size_t cols = groups * 32;
    for (size_t i = 0; i < row_count; i++) {
        const uint8_t *row = w + (row_start + i) * groups * MOE_MXFP4_GROUP_BYTES;
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *group = row + g * MOE_MXFP4_GROUP_BYTES;
            float scale = e8m0_scale(group[16]);
            float *dst = out + i * cols + g * 32;
            for (size_t k = 0; k < 16; k++) {
                dst[2 * k] = fp4_values[group[k] & 0x0F] * scale;
                dst[2 * k + 1] = fp4_values[group[k] >> 4] * scale;
            }
        }
    }
}

void moe_mxfp4_gemv_portable(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, const float *x, float *y) {
    for (size_t i = 0; i < row_count; i++) {
        const uint8_t *row = w + (row_start + i) * groups * MOE_MXFP4_GROUP_BYTES;
        float total = 0;
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *group = row + g * MOE_MXFP4_GROUP_BYTES;
            const float *xg = x + g * 32;
            float dot = 0;
            for (size_t k = 0; k < 16; k++) {
                dot += fp4_values[group[k] & 0x0F] * xg[2 * k];
                dot += fp4_values[group[k] >> 4] * xg[2 * k + 1];
            }
            total += dot * e8m0_scale(group[16]);
        }
        y[i] = total;
    }
}

// ---- AVX2 / FMA path ---------------------------------------------------------

/// The 32 codes of a group as twice their FP4 values (small integers, exact in int8), in
/// column order: a byte shuffle looks each nibble up, and interleaving the low and high
/// nibbles restores low-nibble-first order.
__attribute__((target("avx2,fma,f16c")))
static float group_dot_avx2(const uint8_t *group, const float *x) {
    const __m128i doubled = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    const __m128i nibble = _mm_set1_epi8(0x0F);
    __m128i bytes = _mm_loadu_si128((const __m128i *)group);
    __m128i low = _mm_shuffle_epi8(doubled, _mm_and_si128(bytes, nibble));
    __m128i high = _mm_shuffle_epi8(doubled, _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble));
    __m128i first = _mm_unpacklo_epi8(low, high);   // columns 0 ..< 16
    __m128i second = _mm_unpackhi_epi8(low, high);  // columns 16 ..< 32
    __m256 acc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(first)), _mm256_loadu_ps(x));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(first, 8))), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(second)), _mm256_loadu_ps(x + 16), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(second, 8))), _mm256_loadu_ps(x + 24), acc);
    return horizontal_sum(acc);
}

__attribute__((target("avx2,fma,f16c")))
static void gemv_avx2(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, const float *x, float *y) {
    for (size_t i = 0; i < row_count; i++) {
        const uint8_t *row = w + (row_start + i) * groups * MOE_MXFP4_GROUP_BYTES;
        float total = 0;
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *group = row + g * MOE_MXFP4_GROUP_BYTES;
            // The codes were doubled to stay integers: halve the scale instead.
            total += group_dot_avx2(group, x + g * 32) * (0.5f * e8m0_scale(group[16]));
        }
        y[i] = total;
    }
}

// ---- dispatch ------------------------------------------------------------------

static int has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached;
}

void moe_mxfp4_gemv(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, const float *x, float *y) {
    if (has_avx2()) {
        gemv_avx2(w, groups, row_start, row_count, x, y);
    } else {
        moe_mxfp4_gemv_portable(w, groups, row_start, row_count, x, y);
    }
}
