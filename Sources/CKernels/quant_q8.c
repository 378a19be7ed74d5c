#include "quant_kernels.h"
#include "ckernels.h"

#include <immintrin.h>
#include "kernel_helpers.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Products of packed weights with activations quantized to 8 bits (see quant_kernels.h).

enum { block = 32 };

size_t moe_q8_block_count(size_t cols) { return cols / block; }

int moe_q8_supports(uint32_t bits) { return bits == 2 || bits == 4 || bits == 8; }

size_t moe_q8_activation_order(uint32_t bits, size_t c) {
    switch (bits) {
    case 4: return (c % 2) * 16 + c / 2;  // byte j holds codes 2j (low nibble) and 2j+1
    case 2: return (c % 4) * 8 + c / 4;   // byte j holds codes 4j ... 4j+3, two bits each
    default: return c;
    }
}

void moe_q8_quantize_activations(const float *x, size_t n, size_t cols, uint32_t bits, int8_t *a, float *d, float *ds) {
    size_t blocks = cols / block;
    size_t order[block];
    for (size_t c = 0; c < block; c++) order[c] = moe_q8_activation_order(bits, c);
    for (size_t i = 0; i < n; i++) {
        for (size_t b = 0; b < blocks; b++) {
            const float *xb = x + i * cols + b * block;
            int8_t *ab = a + i * cols + b * block;
            float amax = 0;
            for (size_t c = 0; c < block; c++) amax = fmaxf(amax, fabsf(xb[c]));
            float scale = amax / 127.0f, inverse = amax > 0 ? 127.0f / amax : 0;
            int sum = 0;
            for (size_t c = 0; c < block; c++) {
                int q = (int)nearbyintf(xb[c] * inverse);
                q = q > 127 ? 127 : (q < -127 ? -127 : q);
                ab[order[c]] = (int8_t)q;
                sum += q;
            }
            d[i * blocks + b] = scale;
            ds[i * blocks + b] = scale * (float)sum;
        }
    }
}

// ---- portable path ----------------------------------------------------------

static inline uint32_t code_of(const uint8_t *row, size_t c, uint32_t bits) {
    size_t bit = c * bits;
    return (uint32_t)(row[bit / 8] >> (bit % 8)) & ((1u << bits) - 1u);  // 2, 4, 8 bits never straddle bytes
}

void moe_quant_matmul_q8_portable(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                  uint32_t bits, size_t group_size, size_t cols, size_t row_start, size_t row_count,
                                  const int8_t *a, const float *d, const float *ds, size_t n, float *y, size_t ldy) {
    size_t groups = cols / group_size, blocks = cols / block, per_group = group_size / block;
    size_t row_bytes = cols * bits / 8;
    size_t order[block];
    for (size_t c = 0; c < block; c++) order[c] = moe_q8_activation_order(bits, c);
    for (size_t k = 0; k < row_count; k++) {
        size_t r = row_start + k;
        const uint8_t *row = (const uint8_t *)packed + r * row_bytes;
        for (size_t i = 0; i < n; i++) {
            float total = 0;
            for (size_t g = 0; g < groups; g++) {
                float dot = 0, minimum_weight = 0;
                for (size_t b = g * per_group; b < (g + 1) * per_group; b++) {
                    int32_t sum = 0;
                    for (size_t c = 0; c < block; c++)
                        sum += (int32_t)code_of(row, b * block + c, bits) * a[i * cols + b * block + order[c]];
                    dot += d[i * blocks + b] * (float)sum;
                    minimum_weight += ds[i * blocks + b];
                }
                total += half_to_float(scales[r * groups + g]) * dot + half_to_float(minimums[r * groups + g]) * minimum_weight;
            }
            y[i * ldy + k] = total;
        }
    }
}

// ---- AVX2 path --------------------------------------------------------------
//
// Per block of 32 codes: unpack them to 32 bytes (one code per byte, in the activation
// order), multiply with the int8 activations into 16-bit pair sums (maddubs: unsigned ×
// signed), widen the pairs to 8 int32 sums, and add those, scaled by the block's d, to a
// float accumulator. Unsigned codes up to 15 keep the pair sums far from int16 overflow; 8-bit
// codes (up to 255) would not, so they are made signed (q - 128, added back through the
// minimum: s·q + m = s·(q - 128) + (m + 128·s)) and multiplied as |w| × (a with w's sign),
// llama.cpp's trick, whose pair sums stay within 2 · 128 · 127. Up to four activation rows
// share each unpacked block.

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i unpack_block(const uint8_t *row, size_t b, const uint32_t bits) {
    if (bits == 8) return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + b * 32)), _mm256_set1_epi8((char)0x80));
    if (bits == 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)(row + b * 16));
        __m128i low = _mm_and_si128(v, _mm_set1_epi8(0x0f));
        __m128i high = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
        return _mm256_set_m128i(high, low);
    }
    uint64_t v;
    memcpy(&v, row + b * 8, 8);
    __m256i lanes = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)v), _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(lanes, _mm256_set1_epi8(0x03));
}

/// Σ_g h[g] · v[g] for `groups` half-precision h and float v, eight at a time.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float half_dot(const uint16_t *h, const float *v, size_t groups) {
    __m256 acc = _mm256_setzero_ps();
    size_t g = 0;
    for (; g + 8 <= groups; g += 8)
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + g))), _mm256_loadu_ps(v + g), acc);
    float sum = horizontal_sum(acc);
    for (; g < groups; g++) sum += _cvtsh_ss(h[g]) * v[g];
    return sum;
}

// One block's integer sums for input i, times the block's coefficient (the weight group's
// scale times the activation block's scale), added to acc.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 block_q8_avx2(__m256i w, __m256i magnitude, const uint32_t bits, const int8_t *activations,
                                   float scale, float activation_scale, __m256 acc) {
    __m256i av = _mm256_loadu_si256((const __m256i *)activations);
    if (bits == 8) av = _mm256_sign_epi8(av, w);
    __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, av), _mm256_set1_epi16(1)));
    return _mm256_fmadd_ps(sums, _mm256_set1_ps(scale * activation_scale), acc);
}

// One weight row against `inputs` (1 to 4, a constant after inlining) activation rows, over
// the row's blocks in one flat loop: each block's sums are scaled by s_g · d_b and added to
// two accumulators per input, even and odd blocks, so consecutive FMAs do not wait on each
// other (every input the same way, so a result does not depend on how many share the call). `row_scales_f` holds the row's group scales as
// floats. The minimums' term, Σ_g m_g · group_weight[g] (group_weight = Σ_b ds over the
// group's blocks), is one vector dot per input afterwards; for 8-bit codes, whose q - 128 is
// what the integers multiply, plus 128 · Σ_g s_g · group_weight[g].
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void row_q8_avx2(const uint8_t *row, const float *row_scales_f, const uint16_t *row_scales,
                               const uint16_t *row_minimums, const uint32_t bits, size_t groups, unsigned group_shift,
                               size_t cols, const int8_t *a, const float *d, const float *group_weight,
                               const size_t inputs, float *y, size_t ldy) {
    const size_t blocks = cols / block;
    __m256 even[4], odd[4];
    for (size_t i = 0; i < inputs; i++) { even[i] = _mm256_setzero_ps(); odd[i] = _mm256_setzero_ps(); }
    for (size_t b = 0; b < blocks; b++) {
        __m256i w = unpack_block(row, b, bits);
        __m256i magnitude = bits == 8 ? _mm256_sign_epi8(w, w) : w;
        float s = row_scales_f[b >> group_shift];
        for (size_t i = 0; i < inputs; i++) {
            const int8_t *ab = a + i * cols + b * block;
            if (b & 1) odd[i] = block_q8_avx2(w, magnitude, bits, ab, s, d[i * blocks + b], odd[i]);
            else even[i] = block_q8_avx2(w, magnitude, bits, ab, s, d[i * blocks + b], even[i]);
        }
    }
    __m256 acc[4];
    for (size_t i = 0; i < inputs; i++) acc[i] = _mm256_add_ps(even[i], odd[i]);
    for (size_t i = 0; i < inputs; i++) {
        float minimum_term = half_dot(row_minimums, group_weight + i * groups, groups);
        if (bits == 8) minimum_term += 128.0f * half_dot(row_scales, group_weight + i * groups, groups);
        y[i * ldy] = horizontal_sum(acc[i]) + minimum_term;
    }
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void matmul_q8_avx2_bits(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                       const uint32_t bits, size_t group_size, size_t cols, size_t row_start,
                                       size_t row_count, const int8_t *a, const float *d, const float *group_weight,
                                       float *row_scales_f, size_t n, float *y, size_t ldy) {
    size_t groups = cols / group_size, blocks = cols / block;
    unsigned group_shift = group_size == 32 ? 0 : group_size == 64 ? 1 : group_size == 128 ? 2 : 3;
    size_t row_bytes = cols * bits / 8;
    for (size_t k = 0; k < row_count; k++) {
        size_t r = row_start + k;
        const uint8_t *row = (const uint8_t *)packed + r * row_bytes;
        const uint16_t *rs = scales + r * groups, *rm = minimums + r * groups;
        moe_f16_to_f32(rs, row_scales_f, groups);
        for (size_t i0 = 0; i0 < n; i0 += 4) {
            const int8_t *ai = a + i0 * cols;
            const float *di = d + i0 * blocks, *gi = group_weight + i0 * groups;
            float *yi = y + i0 * ldy + k;
            switch (n - i0 < 4 ? n - i0 : 4) {  // a constant input count in each copy
            case 1: row_q8_avx2(row, row_scales_f, rs, rm, bits, groups, group_shift, cols, ai, di, gi, 1, yi, ldy); break;
            case 2: row_q8_avx2(row, row_scales_f, rs, rm, bits, groups, group_shift, cols, ai, di, gi, 2, yi, ldy); break;
            case 3: row_q8_avx2(row, row_scales_f, rs, rm, bits, groups, group_shift, cols, ai, di, gi, 3, yi, ldy); break;
            default: row_q8_avx2(row, row_scales_f, rs, rm, bits, groups, group_shift, cols, ai, di, gi, 4, yi, ldy); break;
            }
        }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void matmul_q8_avx2(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums, uint32_t bits,
                           size_t group_size, size_t cols, size_t row_start, size_t row_count, const int8_t *a,
                           const float *d, const float *ds, size_t n, float *y, size_t ldy) {
    size_t groups = cols / group_size, per_group = group_size / block, blocks = cols / block;
    // Scratch: the minimums' coefficients of every input, then one row's scales as floats.
    float stack[512];
    size_t needed = n * groups + groups;
    float *scratch = needed <= 512 ? stack : malloc(needed * sizeof(float));
    if (!scratch) abort();
    float *group_weight = scratch, *row_scales_f = scratch + n * groups;
    for (size_t i = 0; i < n; i++)
        for (size_t g = 0; g < groups; g++) {
            float w = 0;
            for (size_t b = g * per_group; b < (g + 1) * per_group; b++) w += ds[i * blocks + b];
            group_weight[i * groups + g] = w;
        }
    switch (bits) {  // one specialised copy per width
    case 2: matmul_q8_avx2_bits(packed, scales, minimums, 2, group_size, cols, row_start, row_count, a, d, group_weight, row_scales_f, n, y, ldy); break;
    case 4: matmul_q8_avx2_bits(packed, scales, minimums, 4, group_size, cols, row_start, row_count, a, d, group_weight, row_scales_f, n, y, ldy); break;
    default: matmul_q8_avx2_bits(packed, scales, minimums, 8, group_size, cols, row_start, row_count, a, d, group_weight, row_scales_f, n, y, ldy); break;
    }
    if (scratch != stack) free(scratch);
}

void moe_quant_matmul_q8(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                         uint32_t bits, size_t group_size, size_t cols, size_t row_start, size_t row_count,
                         const int8_t *a, const float *d, const float *ds, size_t n, float *y, size_t ldy) {
    if (!moe_q8_supports(bits) || group_size % block != 0 || cols % group_size != 0) abort();
    if (moe_quant_has_simd())
        matmul_q8_avx2(packed, scales, minimums, bits, group_size, cols, row_start, row_count, a, d, ds, n, y, ldy);
    else
        moe_quant_matmul_q8_portable(packed, scales, minimums, bits, group_size, cols, row_start, row_count, a, d, ds, n, y, ldy);
}
