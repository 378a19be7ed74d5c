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
void moe_bf16_gemv(const uint16_t *w, const float *x, float *y, size_t rows, size_t cols);

#endif
