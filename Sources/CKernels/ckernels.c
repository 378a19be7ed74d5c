#include "ckernels.h"

#include <string.h>
#include <immintrin.h>

// ---- portable scalar paths -------------------------------------------------

static inline float bf16_scalar(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float f16_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int shift = 0;
            while ((mantissa & 0x400) == 0) { mantissa <<= 1; shift++; }
            mantissa &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - shift + 1) << 23) | (mantissa << 13);
        }
    } else if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t bf16_round(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // quiet NaN
    uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + rounding) >> 16);
}

static inline uint16_t f16_round(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t sign = (bits >> 16) & 0x8000u;
    uint32_t absBits = bits & 0x7fffffffu;
    if (absBits > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          // NaN
    if (absBits >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         // overflow to inf
    if (absBits < 0x38800000u) {                                            // subnormal or zero
        if (absBits < 0x33000000u) return (uint16_t)sign;
        uint32_t exponent = absBits >> 23;
        uint32_t mantissa = (absBits & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - exponent;                                    // 14..24
        uint32_t halfway = 1u << (shift - 1);
        uint32_t rest = mantissa & ((1u << shift) - 1);
        uint32_t result = mantissa >> shift;
        if (rest > halfway || (rest == halfway && (result & 1u))) result++;
        return (uint16_t)(sign | result);
    }
    uint32_t rounded = absBits + 0xfffu + ((absBits >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

// ---- AVX2 / F16C paths -----------------------------------------------------

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < count; i++) dst[i] = f16_scalar(src[i]);
}

__attribute__((target("avx2")))
static void bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        __m256i widened = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(widened));
    }
    for (; i < count; i++) dst[i] = bf16_scalar(src[i]);
}

// Dot product of one half-precision weight row with one float row. The weight row is
// converted 16 values at a time; two accumulators hide the FMA latency.
__attribute__((target("avx2,fma,f16c")))
static float half_dot_avx2(const uint16_t *row, int is_f16, const float *x, size_t cols) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(row + c));
        __m128i b = _mm_loadu_si128((const __m128i *)(row + c + 8));
        __m256 wa, wb;
        if (is_f16) {
            wa = _mm256_cvtph_ps(a);
            wb = _mm256_cvtph_ps(b);
        } else {
            wa = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16));
            wb = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
        }
        acc0 = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + c), acc0);
        acc1 = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x + c + 8), acc1);
    }
    __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    sum4 = _mm_hadd_ps(sum4, sum4);
    sum4 = _mm_hadd_ps(sum4, sum4);
    float sum = _mm_cvtss_f32(sum4);
    for (; c < cols; c++) sum += (is_f16 ? f16_scalar(row[c]) : bf16_scalar(row[c])) * x[c];
    return sum;
}

static float half_dot_scalar(const uint16_t *row, int is_f16, const float *x, size_t cols) {
    float sum = 0;
    for (size_t c = 0; c < cols; c++) sum += (is_f16 ? f16_scalar(row[c]) : bf16_scalar(row[c])) * x[c];
    return sum;
}

static int has_avx2_f16c(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    return cached;
}

// ---- public entry points ---------------------------------------------------

void moe_bf16_to_f32(const uint16_t *src, float *dst, size_t count) {
    if (has_avx2_f16c()) { bf16_to_f32_avx2(src, dst, count); return; }
    for (size_t i = 0; i < count; i++) dst[i] = bf16_scalar(src[i]);
}

void moe_f16_to_f32(const uint16_t *src, float *dst, size_t count) {
    if (has_avx2_f16c()) { f16_to_f32_f16c(src, dst, count); return; }
    for (size_t i = 0; i < count; i++) dst[i] = f16_scalar(src[i]);
}

void moe_f32_to_bf16(const float *src, uint16_t *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = bf16_round(src[i]);
}

void moe_f32_to_f16(const float *src, uint16_t *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = f16_round(src[i]);
}

void moe_half_matmul(const uint16_t *w, int is_f16, const float *x, float *y, size_t n, size_t rows, size_t cols) {
    // Weight row outermost: each row is read from memory once and from L1 for the other
    // n - 1 inputs, so the memory traffic is that of one matrix-vector product.
    int fast = has_avx2_f16c();
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        for (size_t i = 0; i < n; i++) {
            y[i * rows + r] = fast ? half_dot_avx2(row, is_f16, x + i * cols, cols)
                                   : half_dot_scalar(row, is_f16, x + i * cols, cols);
        }
    }
}

void moe_bf16_gemv(const uint16_t *w, const float *x, float *y, size_t rows, size_t cols) {
    moe_half_matmul(w, 0, x, y, 1, rows, cols);
}
