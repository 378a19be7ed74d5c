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


// ---- products against activations quantized to 8 bits (decode) --------------------------
//
// As llama.cpp does, the activations of one token are quantized once to 8 bits per block of
// 32 values, x ≈ d_b · a with a in -127 ... 127, and every weight row is then dotted with
// integer multiply-adds (the weight codes are integers already):
//     Σ_c (s q_c + m) x_c ≈ s · Σ_b d_b Σ_{c in b} q_c a_c  +  m · Σ_b d_b Σ_{c in b} a_c
// over the blocks b of each group. Integer sums are exact; only the float combination of
// the block sums depends on the path. 2-, 4- and 8-bit codes take this route; within each
// block the activation values are stored in the order the unpacked codes come out of the
// packed bytes (see moe_q8_activation_order), so the kernel never shuffles codes.

/// Bytes of `a` and floats of `d` and `ds` that `n` rows of `cols` activations need.
size_t moe_q8_block_count(size_t cols);

/// Quantizes `n` rows of `cols` floats (cols a multiple of 32) for weights of `bits` bits:
/// a [n, cols] int8 in that width's order, d [n, cols/32] block scales (max |x| / 127), and
/// ds [n, cols/32] = d_b · Σ a over the block.
void moe_q8_quantize_activations(const float *x, size_t n, size_t cols, uint32_t bits, int8_t *a, float *d, float *ds);

/// Position, within a block of 32, where the activation of column `c` (0 ... 31) is stored
/// for `bits`-bit weights: the identity for 8 bits, evens then odds for 4, c % 4 then c / 4
/// for 2 (the order a block's codes unpack in).
size_t moe_q8_activation_order(uint32_t bits, size_t c);

/// Whether moe_quant_matmul_q8 supports `bits` (2, 4 and 8; 3-bit codes straddle bytes).
int moe_q8_supports(uint32_t bits);

/// y[i * ldy + r] = Σ_c W[r, c] · (d · a)[i, c] for rows [row_start, row_start + row_count)
/// of W and the n quantized activation rows; writes y[i * ldy + r - row_start]. Each result
/// depends only on its weight row and activation row (not on n or on the row range).
void moe_quant_matmul_q8(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                         uint32_t bits, size_t group_size, size_t cols, size_t row_start, size_t row_count,
                         const int8_t *a, const float *d, const float *ds, size_t n, float *y, size_t ldy);

/// The portable path of moe_quant_matmul_q8 (same integer sums, float combination in order).
void moe_quant_matmul_q8_portable(const uint32_t *packed, const uint16_t *scales, const uint16_t *minimums,
                                  uint32_t bits, size_t group_size, size_t cols, size_t row_start, size_t row_count,
                                  const int8_t *a, const float *d, const float *ds, size_t n, float *y, size_t ldy);

#endif
