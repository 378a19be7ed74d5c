#ifndef MOEKIT_QUANT_KERNELS_H
#define MOEKIT_QUANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// Kernels on group-wise affine quantized matrices (Compression's QuantizedMatrix).
//
// Layout, shared with the Swift side:
//  - W is `rows x cols`; each row is cut into groups of `group_size` consecutive columns;
//    cols is a multiple of group_size, and group_size a multiple of 32.
//  - Element (r, c) is w = scale * q + minimum, q in 0 ... 2^bits - 1, bits in {2, 3, 4, 8}.
//  - `packed` is a dense little-endian bit stream of the codes in row-major order: code k
//    occupies stream bits [k*bits, k*bits + bits), least significant bit first, where stream
//    bit i is bit (i % 32) of word i / 32. Because cols*bits is a multiple of 32, every row
//    starts on a word boundary; 3-bit codes cross word boundaries.
//  - `scales` and `minimums` are IEEE half-precision bit patterns, one per (row, group),
//    row-major: index r * (cols / group_size) + g.
//
// Each entry point uses an AVX2/FMA/F16C path when the CPU has it and portable C otherwise;
// the two differ only in the order of float additions.

/// Writes rows [row_start, row_start + row_count) of W, dequantized, into `out`
/// (row-major, row_count x cols).
void moe_quant_dequantize_rows(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                               uint32_t bits, size_t group_size, size_t cols,
                               size_t row_start, size_t row_count, float *out);

/// y[r] = sum_c W[r, c] * x[c] for every row r, computed on the packed codes.
void moe_quant_gemv(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                    uint32_t bits, size_t group_size, size_t rows, size_t cols,
                    const float *x, float *y);

/// The portable path of moe_quant_gemv, whatever the CPU (tests compare the two paths).
void moe_quant_gemv_portable(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                             uint32_t bits, size_t group_size, size_t rows, size_t cols,
                             const float *x, float *y);

/// The portable path of moe_quant_dequantize_rows.
void moe_quant_dequantize_rows_portable(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                        uint32_t bits, size_t group_size, size_t cols,
                                        size_t row_start, size_t row_count, float *out);

/// 1 when the AVX2/FMA/F16C paths are in use on this CPU.
int moe_quant_has_simd(void);

#endif
