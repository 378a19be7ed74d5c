import CKernels
import MoE

/// Products with a quantized weight, computed from the packed codes.
extension QuantizedMatrix {
    /// Dequantized rows per block of the batched path are capped at this many floats (4 MiB),
    /// so a large matrix is never expanded to f32 all at once, while each sgemm call still has
    /// enough output columns to amortise OpenBLAS re-packing the activations on every call
    /// (quant-bench: 1 MiB blocks were slower on a 32-token 4096x4096 product, though the
    /// shared machine made the size of the difference uncertain).
    static let scratchFloats = 1 << 20

    /// `x · Wᵀ` for activations `x` `[n, columns]`: the linear layer, `[n, rows]`.
    ///
    /// One token takes the fused dequantize-dot gemv; a batch dequantizes a block of rows at a
    /// time into a small f32 scratch and multiplies it with OpenBLAS.
    public func linear(_ x: Matrix) -> Matrix {
        linear(x, maximumBlockRows: Swift.max(8, Self.scratchFloats / Swift.max(columns, 1)))
    }

    /// `linear` with a given block height (tests use small blocks to cross block edges).
    func linear(_ x: Matrix, maximumBlockRows: Int) -> Matrix {
        precondition(maximumBlockRows > 0)
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        var out = Matrix(zeros: x.rows, rows)
        guard x.rows > 0, rows > 0, columns > 0 else { return out }
        if x.rows == 1 {
            out.values = gemv(x.values)
            return out
        }
        let blockRows = Swift.min(rows, maximumBlockRows)
        var scratch = [Float](repeating: 0, count: blockRows * columns)
        withStorage { packed, scales, minimums in
            x.values.withUnsafeBufferPointer { xp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    out.values.withUnsafeMutableBufferPointer { op in
                        for start in stride(from: 0, to: rows, by: blockRows) {
                            let count = Swift.min(blockRows, rows - start)
                            moe_quant_dequantize_rows(packed, scales, minimums, UInt32(bits), groupSize, columns,
                                                      start, count, sp.baseAddress)
                            // out[:, start ..< start+count] = x · blockᵀ, written in place through the stride.
                            LinearAlgebra.linear(xp.baseAddress!, count: x.rows, sp.baseAddress!, rows: count, columns: columns,
                                                 into: op.baseAddress! + start, stride: rows)
                        }
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
    func gemv(_ x: [Float], portable: Bool) -> [Float] {
        precondition(x.count == columns, "gemv: vector has \(x.count) values, weight expects \(columns)")
        var y = [Float](repeating: 0, count: rows)
        guard rows > 0 else { return y }
        withStorage { packed, scales, minimums in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let kernel = portable ? moe_quant_gemv_portable : moe_quant_gemv
                    kernel(packed, scales, minimums, UInt32(bits), groupSize, rows, columns, xp.baseAddress, yp.baseAddress)
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
