#ifndef MOEKIT_CKERNELS_H
#define MOEKIT_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

// Hot numeric kernels that Swift cannot make fast on baseline x86-64 (no F16C).
// Each function picks an AVX2/F16C path at run time when the CPU has it and
// falls back to portable C otherwise; both paths give bit-identical results.

/// Widens `count` bfloat16 values (raw bit patterns) to float32.
void moe_bf16_to_f32(const uint16_t *src, float *dst, size_t count);

/// Widens `count` IEEE half-precision values (raw bit patterns) to float32.
void moe_f16_to_f32(const uint16_t *src, float *dst, size_t count);

/// Rounds `count` float32 values to bfloat16 (round to nearest even, NaN kept quiet).
void moe_f32_to_bf16(const float *src, uint16_t *dst, size_t count);

/// Rounds `count` float32 values to IEEE half precision (round to nearest even).
void moe_f32_to_f16(const float *src, uint16_t *dst, size_t count);

/// y[r] = sum_c W[r, c] * x[c] for a row-major bfloat16 matrix W of shape rows x cols.
/// (Sums in float32 in a different order than sgemv: equal to it within rounding, not bitwise.)
void moe_bf16_gemv(const uint16_t *w, const float *x, float *y, size_t rows, size_t cols);

/// y[i, r] = sum_c W[r, c] * x[i, c] for i < n: `n` float rows `x` [n, cols] times the
/// transpose of a row-major half-precision matrix W [rows, cols] (bfloat16, or IEEE half
/// when `is_f16` is nonzero), into `y` [n, rows]. Meant for a few rows (decode); every
/// weight row is read from memory once whatever n is. Each result depends only on its weight
/// row and input row (not on n, nor on where the row falls in a block).
void moe_half_matmul(const uint16_t *w, int is_f16, const float *x, float *y, size_t n, size_t rows, size_t cols);

/// `moe_half_matmul` writing y[i * ldy + r] (ldy >= rows): a column block of a wider output,
/// so a large product can be split by weight rows. Results are those of `moe_half_matmul`.
void moe_half_matmul_strided(const uint16_t *w, int is_f16, const float *x, float *y, size_t n, size_t rows, size_t cols,
                             size_t ldy);

/// y[i * ldy + r] = sum_c W[r, c] * x[i, c] for i < n: a few float rows `x` [n, cols] times
/// the transpose of a row-major float matrix W [rows, cols]; `ldy` >= rows is the stride of
/// y's rows (to write a column block of a wider output). For 2-8 rows, where sgemm's packing
/// of W costs more than the product. Each result depends only on its weight row and input
/// row, never on n, on where the row falls in a block, or on ldy.
void moe_f32_matmul(const float *w, const float *x, float *y, size_t n, size_t rows, size_t cols, size_t ldy);

#endif
