import CKernels
import Synchronization
import MoE

/// Products with a quantized weight, computed from the packed codes.
extension QuantizedMatrix {
    /// Dequantized rows per block of the batched path are capped at this many floats (4 MiB),
    /// so a large matrix is never expanded to f32 all at once, while each sgemm call still has
    /// enough output columns to amortise OpenBLAS re-packing the activations on every call
    /// (quant-bench: 1 MiB blocks were slower on a 32-token 4096x4096 product, though the
    /// shared machine made the size of the difference uncertain).
    static let scratchFloats = 1 << 20

    /// Inputs up to this many rows take the integer kernel (activations quantized to 8 bits
    /// once, every weight row read once for all of them); larger batches are compute-bound and
    /// dequantize blocks of rows for sgemm.
    static let integerRowLimit = 8

    /// Whether products of a few rows quantize the activations to 8 bits for the integer
    /// kernels (the default, as llama.cpp does), or keep them in f32 (exact to rounding
    /// against the dequantized weights: what tests of a plan's weights compare).
    public static var usesIntegerKernels: Bool {
        get { integerKernelsEnabled.load(ordering: .relaxed) }
        set { integerKernelsEnabled.store(newValue, ordering: .relaxed) }
    }
    private static let integerKernelsEnabled = Atomic(true)

    /// Whether `rows` input rows take the integer kernel.
    func takesIntegerKernel(inputRows: Int) -> Bool {
        inputRows <= Self.integerRowLimit && Self.usesIntegerKernels
            && QuantizedActivations.supports(bits: bits, groupSize: groupSize)
    }

    /// `x · Wᵀ` for activations `x` `[n, columns]`: the linear layer, `[n, rows]`.
    ///
    /// A few tokens (decode) take the integer kernel on activations quantized to 8 bits, as
    /// llama.cpp does, or for 3-bit codes the fused dequantize-dot gemv on float activations;
    /// a batch (prefill) dequantizes a block of rows at a time into a small f32 scratch and
    /// multiplies it with OpenBLAS. Large products are split by rows over the compute pool.
    public func linear(_ x: Matrix) -> Matrix {
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        if takesIntegerKernel(inputRows: x.rows) {
            return integerLinear(QuantizedActivations(x, bits: bits))
        }
        if x.rows == 1 { return Matrix(rows: 1, columns: rows, values: gemv(x.values)) }
        return linear(x, maximumBlockRows: Swift.max(8, Self.scratchFloats / Swift.max(columns, 1)))
    }

    /// `x · Wᵀ` through the integer kernel, for activations already quantized (the gate and
    /// up projections of an expert share one quantization of their input).
    func integerLinear(_ a: QuantizedActivations, portable: Bool = false) -> Matrix {
        precondition(a.columns == columns && a.bits == bits)
        var out = Matrix(zeros: a.rows, rows)
        guard a.rows > 0, rows > 0 else { return out }
        let (columns, rows, bits, groupSize) = (self.columns, self.rows, UInt32(self.bits), self.groupSize)
        let kernel = portable ? moe_quant_matmul_q8_portable : moe_quant_matmul_q8
        withStorage { packed, scales, minimums in
            a.values.withUnsafeBufferPointer { values in
                a.scales.withUnsafeBufferPointer { d in
                    a.blockSums.withUnsafeBufferPointer { ds in
                        out.values.withUnsafeMutableBufferPointer { y in
                            // Each part writes only its own columns of y.
                            nonisolated(unsafe) let (p, s, m, v, dp, dsp, yp) = (packed, scales, minimums, values.baseAddress, d.baseAddress, ds.baseAddress, y.baseAddress!)
                            ComputePool.forEachRange(rows: rows, parts: ComputePool.parts(work: a.rows * rows * columns, rows: rows)) { range in
                                kernel(p, s, m, bits, groupSize, columns, range.lowerBound, range.count, v, dp, dsp, a.rows,
                                       yp + range.lowerBound, rows)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `linear` on float activations with a given block height (tests use small blocks to
    /// cross block edges). Blocks run side by side when the pool splits sgemm.
    func linear(_ x: Matrix, maximumBlockRows: Int) -> Matrix {
        precondition(maximumBlockRows > 0)
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        var out = Matrix(zeros: x.rows, rows)
        guard x.rows > 0, rows > 0, columns > 0 else { return out }
        let (rows, columns, bits, groupSize) = (self.rows, self.columns, UInt32(self.bits), self.groupSize)
        withStorage { packed, scales, minimums in
            x.values.withUnsafeBufferPointer { xp in
                out.values.withUnsafeMutableBufferPointer { op in
                    // Each tile is dequantized into its part's scratch and written to its own columns.
                    nonisolated(unsafe) let (p, s, m, input, output) = (packed, scales, minimums, xp.baseAddress!, op.baseAddress!)
                    ComputePool.forEachTile(rows: rows, columns: columns, maximumRows: maximumBlockRows) { scratch, tile in
                        moe_quant_dequantize_rows(p, s, m, bits, groupSize, columns, tile.lowerBound, tile.count, scratch)
                        // out[:, tile] = x · tileᵀ, written in place through the stride.
                        LinearAlgebra.linear(input, count: x.rows, scratch, rows: tile.count, columns: columns,
                                             into: output + tile.lowerBound, stride: rows)
                    }
                }
            }
        }
        return out
    }

    /// `W · x` for one vector of `columns` values, `rows` results (fused dequantize-dot).
    public func gemv(_ x: [Float]) -> [Float] {
        gemv(x, portable: false)
    }

    /// The gemv on the chosen C path; `portable` forces the scalar code (tests compare both).
    /// A large matrix is split by rows over the compute pool (rows start on word boundaries).
    func gemv(_ x: [Float], portable: Bool) -> [Float] {
        precondition(x.count == columns, "gemv: vector has \(x.count) values, weight expects \(columns)")
        var y = [Float](repeating: 0, count: rows)
        guard rows > 0 else { return y }
        let (columns, rows, bits, groupSize) = (self.columns, self.rows, self.bits, self.groupSize)
        let (wordsPerRow, groupsPerRow) = (columns * bits / 32, self.groupsPerRow)
        let kernel = portable ? moe_quant_gemv_portable : moe_quant_gemv
        withStorage { packed, scales, minimums in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    // Each part writes only its own rows of y.
                    nonisolated(unsafe) let (p, s, m, input, output) = (packed!, scales!, minimums!, xp.baseAddress, yp.baseAddress!)
                    ComputePool.forEachRange(rows: rows, parts: ComputePool.parts(work: rows * columns, rows: rows)) { range in
                        let r = range.lowerBound
                        kernel(p + r * wordsPerRow, s + r * groupsPerRow, m + r * groupsPerRow, UInt32(bits), groupSize,
                               range.count, columns, input, output + r)
                    }
                }
            }
        }
        return y
    }

    /// The whole matrix in f32 (tests, export, merging on top of quantized experts).
    public func dequantized() -> Matrix {
        dequantizedRows(0..<rows)
    }

    /// Rows `range` in f32.
    public func dequantizedRows(_ range: Range<Int>) -> Matrix {
        dequantizedRows(range, portable: false)
    }

    /// Rows `range` on the chosen C path; `portable` forces the scalar code.
    func dequantizedRows(_ range: Range<Int>, portable: Bool) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        var out = Matrix(zeros: range.count, columns)
        guard !range.isEmpty else { return out }
        withStorage { packed, scales, minimums in
            out.values.withUnsafeMutableBufferPointer { op in
                let kernel = portable ? moe_quant_dequantize_rows_portable : moe_quant_dequantize_rows
                kernel(packed, scales, minimums, UInt32(bits), groupSize, columns, range.lowerBound, range.count, op.baseAddress)
            }
        }
        return out
    }

    private func withStorage<R>(_ body: (UnsafePointer<UInt32>?, UnsafePointer<UInt16>?, UnsafePointer<UInt16>?) -> R) -> R {
        packed.withUnsafeBufferPointer { p in
            scales.withUnsafeBufferPointer { s in
                minimums.withUnsafeBufferPointer { m in body(p.baseAddress, s.baseAddress, m.baseAddress) }
            }
        }
    }
}

extension QuantizedMatrix {
    /// Whether the packed kernels run their AVX2/FMA/F16C path on this CPU.
    public static var kernelUsesSIMD: Bool { moe_quant_has_simd() != 0 }
}
