#ifndef MOEKIT_MXFP4_KERNELS_H
#define MOEKIT_MXFP4_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// Kernels on MXFP4 matrices (the OCP microscaling format gpt-oss stores its experts in),
// kept as stored rather than widened.
//
// Layout, shared with the Swift side (MXFP4Matrix):
//  - W is `rows x cols`, cols = 32 * groups; each row is cut into groups of 32 columns.
//  - Group g of row r is 17 bytes at w + (r * groups + g) * 17: 16 bytes of codes, then the
//    group's E8M0 scale byte s. Code byte k holds column 32g + 2k in its low nibble and
//    column 32g + 2k + 1 in its high nibble (low nibble first, as gpt-oss writes them).
//  - A nibble is an FP4 E2M1 code: bit 3 the sign, then 0, 0.5, 1, 1.5, 2, 3, 4, 6.
//  - Element (r, c) = fp4(nibble) * 2^(s - 127), as transformers' ldexp computes it (s = 255
//    gives infinities, s = 0 the subnormal 2^-127).
//
// moe_mxfp4_gemv uses an AVX2/FMA path when the CPU has it and portable C otherwise; both
// sum each group's code-times-x products first and scale the group sum once, so they differ
// only in the order of float additions.

/// Bytes of one row: 17 per group of 32 columns.
#define MOE_MXFP4_GROUP_BYTES 17

/// Writes rows [row_start, row_start + row_count) of W, decoded, into `out`
/// (row-major, row_count x 32 * groups).
void moe_mxfp4_decode_rows(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, float *out);

/// y[r] = sum_c W[r, c] * x[c] for rows [row_start, row_start + row_count), on the codes.
void moe_mxfp4_gemv(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, const float *x, float *y);

/// The portable path of moe_mxfp4_gemv, whatever the CPU (tests compare the two paths).
void moe_mxfp4_gemv_portable(const uint8_t *w, size_t groups, size_t row_start, size_t row_count, const float *x, float *y);

#endif
