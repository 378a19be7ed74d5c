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

// ---- several input rows times one weight matrix (batched decode) ------------
//
// y[i, r] = dot(W[r, :], x[i, :]) for a few input rows i. OpenBLAS's sgemm packs the whole
// weight matrix on every call, which for 2-8 rows costs more than the product itself; these
// kernels instead take 4 weight rows and up to 3 input rows at a time and keep the 12 partial
// dot products in registers, so per 8 columns 4 weight loads (widened once when half precision)
// and 3 input loads feed 12 FMAs, and each weight row is read from memory once per call.
// Every (row, input) is summed in exactly the same order whatever block it falls in, so a
// result does not depend on n, on the block position or on ldy.

__attribute__((target("avx2,fma,f16c")))
static inline __m256 load8_f32(const float *w) { return _mm256_loadu_ps(w); }

__attribute__((target("avx2,fma,f16c")))
static inline __m256 load8_bf16(const uint16_t *w) {
    __m256i widened = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16);
    return _mm256_castsi256_ps(widened);
}

__attribute__((target("avx2,fma,f16c")))
static inline __m256 load8_f16(const uint16_t *w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w)); }

static inline float scalar_f32(float v) { return v; }

#define BLOCK_ROWS 4

// Rows of a decode-sized product are short (an expert's 1-2k columns: 2-4 KB in BF16), so the
// four streams of a block each end before the hardware prefetcher has ramped up, and the
// kernel waits on memory: a 384 x 1024 BF16 product ran at 4-5 GB/s on one core against 9-12
// for 4096 columns. Each load therefore also prefetches the same column of the rows two
// blocks ahead (prefetches never fault, so the last blocks may point past the matrix);
// with it the short products ran at 7-9 GB/s (one block ahead 7-8, four ahead hurt the
// long rows).
#define PREFETCH_BLOCKS 2

// Dot products of 4 weight rows with INPUTS input rows (1 to 3), written to y for the rows
// and inputs that exist. One definition per weight type and input count.
#define DEFINE_BLOCK(NAME, WEIGHT, LOAD8, SCALAR, INPUTS)                                                \
__attribute__((target("avx2,fma,f16c"), always_inline))                                                 \
static inline void NAME(const WEIGHT *const wr[BLOCK_ROWS], const float *x, size_t cols, float *y,       \
                        size_t ldy, size_t valid_rows) {                                                \
    __m256 acc[BLOCK_ROWS][INPUTS];                                                                     \
    for (int a = 0; a < BLOCK_ROWS; a++)                                                                \
        for (int b = 0; b < INPUTS; b++) acc[a][b] = _mm256_setzero_ps();                               \
    size_t c = 0;                                                                                       \
    for (; c + 8 <= cols; c += 8) {                                                                     \
        __m256 xv[INPUTS];                                                                              \
        for (int b = 0; b < INPUTS; b++) xv[b] = _mm256_loadu_ps(x + b * cols + c);                     \
        for (int a = 0; a < BLOCK_ROWS; a++) {                                                          \
            _mm_prefetch((const char *)(wr[a] + c + PREFETCH_BLOCKS * BLOCK_ROWS * cols), _MM_HINT_T0);  \
            __m256 wv = LOAD8(wr[a] + c);                                                               \
            for (int b = 0; b < INPUTS; b++) acc[a][b] = _mm256_fmadd_ps(wv, xv[b], acc[a][b]);         \
        }                                                                                               \
    }                                                                                                   \
    for (int b = 0; b < INPUTS; b++) {                                                                  \
        /* the four rows' sums at once: two rounds of pairwise adds, then the two halves */             \
        __m256 pairs = _mm256_hadd_ps(_mm256_hadd_ps(acc[0][b], acc[1][b]),                             \
                                      _mm256_hadd_ps(acc[2][b], acc[3][b]));                            \
        float sums[BLOCK_ROWS];                                                                         \
        _mm_storeu_ps(sums, _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1))); \
        for (size_t a = 0; a < valid_rows; a++) {                                                       \
            for (size_t t = c; t < cols; t++) sums[a] += SCALAR(wr[a][t]) * x[b * cols + t];            \
            y[b * ldy + a] = sums[a];                                                                   \
        }                                                                                               \
    }                                                                                                   \
}

// Inputs go three at a time, then a block of two or one for the rest, so no work is wasted
// on padding inputs; a last partial block of rows repeats the last row and drops it.
#define DEFINE_BLOCKED_MATMUL(NAME, WEIGHT, LOAD8, SCALAR)                                              \
DEFINE_BLOCK(NAME##_block1, WEIGHT, LOAD8, SCALAR, 1)                                                   \
DEFINE_BLOCK(NAME##_block2, WEIGHT, LOAD8, SCALAR, 2)                                                   \
DEFINE_BLOCK(NAME##_block3, WEIGHT, LOAD8, SCALAR, 3)                                                   \
__attribute__((target("avx2,fma,f16c")))                                                              \
static void NAME(const WEIGHT *w, const float *x, float *y, size_t n, size_t rows, size_t cols,      \
                 size_t ldy) {                                                                        \
    for (size_t r0 = 0; r0 < rows; r0 += BLOCK_ROWS) {                                                \
        const WEIGHT *wr[BLOCK_ROWS];                                                                 \
        for (int a = 0; a < BLOCK_ROWS; a++) wr[a] = w + (r0 + a < rows ? r0 + a : rows - 1) * cols;  \
        size_t valid = rows - r0 < BLOCK_ROWS ? rows - r0 : BLOCK_ROWS;                               \
        size_t i0 = 0;                                                                                \
        for (; i0 + 3 <= n; i0 += 3) NAME##_block3(wr, x + i0 * cols, cols, y + i0 * ldy + r0, ldy, valid); \
        if (n - i0 == 2) NAME##_block2(wr, x + i0 * cols, cols, y + i0 * ldy + r0, ldy, valid);       \
        if (n - i0 == 1) NAME##_block1(wr, x + i0 * cols, cols, y + i0 * ldy + r0, ldy, valid);       \
    }                                                                                                 \
}

DEFINE_BLOCKED_MATMUL(blocked_matmul_f32, float, load8_f32, scalar_f32)
DEFINE_BLOCKED_MATMUL(blocked_matmul_bf16, uint16_t, load8_bf16, bf16_scalar)
DEFINE_BLOCKED_MATMUL(blocked_matmul_f16, uint16_t, load8_f16, f16_scalar)

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
    moe_half_matmul_strided(w, is_f16, x, y, n, rows, cols, rows);
}

void moe_half_matmul_strided(const uint16_t *w, int is_f16, const float *x, float *y, size_t n, size_t rows, size_t cols,
                             size_t ldy) {
    if (n == 0 || rows == 0) return;
    // Four weight rows at a time, one input too: four independent streams from memory keep
    // more loads in flight than one row at a time, and a result never depends on n.
    if (has_avx2_f16c()) {
        if (is_f16) blocked_matmul_f16(w, x, y, n, rows, cols, ldy);
        else blocked_matmul_bf16(w, x, y, n, rows, cols, ldy);
        return;
    }
    // No AVX2: weight row outermost, so each row is read from memory once.
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        for (size_t i = 0; i < n; i++) y[i * ldy + r] = half_dot_scalar(row, is_f16, x + i * cols, cols);
    }
}

void moe_f32_matmul(const float *w, const float *x, float *y, size_t n, size_t rows, size_t cols, size_t ldy) {
    if (n == 0 || rows == 0) return;
    if (has_avx2_f16c()) { blocked_matmul_f32(w, x, y, n, rows, cols, ldy); return; }
    for (size_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        for (size_t i = 0; i < n; i++) {
            float sum = 0;
            for (size_t c = 0; c < cols; c++) sum += row[c] * x[i * cols + c];
            y[i * ldy + r] = sum;
        }
    }
}

void moe_bf16_gemv(const uint16_t *w, const float *x, float *y, size_t rows, size_t cols) {
    moe_half_matmul(w, 0, x, y, 1, rows, cols);
}
