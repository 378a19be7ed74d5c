import CBLAS
import CKernels
import Foundation

/// Dense products on top of OpenBLAS. Everything here is row-major.
public enum LinearAlgebra {
    /// `x · Wᵀ` for activations `x` `[n, in]` and a weight `W` `[out, in]`: the linear layer.
    public static func linear(_ x: Matrix, _ weight: Matrix) -> Matrix {
        precondition(x.columns == weight.columns, "linear: input has \(x.columns) features, weight expects \(weight.columns)")
        guard !weight.values.isEmpty else { return Matrix(zeros: x.rows, weight.rows) }
        return weight.values.withUnsafeBufferPointer { w in linear(x, w.baseAddress!, rows: weight.rows, columns: weight.columns) }
    }

    /// `x · Wᵀ` for a row-major weight `W` `[rows, columns]` at `weight` (a loaded matrix, or
    /// one used in place in the store's memory map).
    public static func linear(_ x: Matrix, _ weight: UnsafePointer<Float>, rows: Int, columns: Int) -> Matrix {
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        var out = Matrix(zeros: x.rows, rows)
        guard x.rows > 0, rows > 0, columns > 0 else { return out }
        x.values.withUnsafeBufferPointer { v in
            out.values.withUnsafeMutableBufferPointer { y in
                linear(v.baseAddress!, count: x.rows, weight, rows: rows, columns: columns, into: y.baseAddress!, stride: rows)
            }
        }
        return out
    }

    /// Input counts up to this use `moe_f32_matmul` (a few sequences decoding together);
    /// sgemm packs the whole weight on every call, which costs more than a product this small.
    public static let smallBatchLimit = 8

    /// `y[i * stride + r] = Σ_c W[r, c] · x[i, c]` for `count` input rows: the one place that
    /// picks the dense kernel, so every f32 weight (loaded, mapped from the store or dequantized
    /// block by block) gives bit-identical results for the same inputs. One row: sgemv;
    /// 2...`smallBatchLimit` rows: `moe_f32_matmul`; more: sgemm. Large products are split by
    /// weight rows over the compute pool; each row's result is the same in any split.
    public static func linear(_ x: UnsafePointer<Float>, count: Int, _ weight: UnsafePointer<Float>, rows: Int, columns: Int,
                              into y: UnsafeMutablePointer<Float>, stride: Int) {
        guard count > 0, rows > 0 else { return }
        if count > smallBatchLimit && !ComputePool.splitsBLAS {
            sgemm(x, count: count, weight, rows: rows, columns: columns, into: y, stride: stride)
            return
        }
        // The parts write disjoint columns of y and only read weight and x.
        nonisolated(unsafe) let (w, input, output) = (weight, x, y)
        ComputePool.forEachRange(rows: rows, parts: ComputePool.parts(work: count * rows * columns, rows: rows)) { range in
            let (wp, yp) = (w + range.lowerBound * columns, output + range.lowerBound)
            if count == 1 {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(range.count), Int32(columns), 1, wp, Int32(columns), input, 1, 0, yp, 1)
            } else if count <= smallBatchLimit {
                moe_f32_matmul(wp, input, yp, count, range.count, columns, stride)
            } else {
                sgemm(input, count: count, wp, rows: range.count, columns: columns, into: yp, stride: stride)
            }
        }
    }

    /// One sgemm call: `y[i * stride + r] = Σ_c W[r, c] · x[i, c]`.
    static func sgemm(_ x: UnsafePointer<Float>, count: Int, _ weight: UnsafePointer<Float>, rows: Int, columns: Int,
                      into y: UnsafeMutablePointer<Float>, stride: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(rows), Int32(columns), 1,
                    x, Int32(columns), weight, Int32(columns), 0, y, Int32(stride))
    }

    /// `a · b` for `a` `[n, k]` and `b` `[k, m]`.
    public static func matmul(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.columns == b.rows, "matmul: \(a.rows)x\(a.columns) · \(b.rows)x\(b.columns)")
        var out = Matrix(zeros: a.rows, b.columns)
        guard a.rows > 0, b.columns > 0 else { return out }
        a.values.withUnsafeBufferPointer { ap in
            b.values.withUnsafeBufferPointer { bp in
                out.values.withUnsafeMutableBufferPointer { cp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(a.rows), Int32(b.columns), Int32(a.columns), 1,
                                ap.baseAddress, Int32(a.columns), bp.baseAddress, Int32(b.columns), 0, cp.baseAddress, Int32(b.columns))
                }
            }
        }
        return out
    }

    /// Adds `bias` to every row of `x`.
    public static func addBias(_ x: inout Matrix, _ bias: [Float]) {
        precondition(bias.count == x.columns)
        x.values.withUnsafeMutableBufferPointer { v in
            for r in 0..<x.rows {
                let base = r * x.columns
                for c in 0..<x.columns { v[base + c] += bias[c] }
            }
        }
    }

    /// `x += y` elementwise.
    public static func add(_ x: inout Matrix, _ y: Matrix) {
        precondition(x.rows == y.rows && x.columns == y.columns)
        x.values.withUnsafeMutableBufferPointer { a in
            y.values.withUnsafeBufferPointer { b in
                for i in 0..<a.count { a[i] += b[i] }
            }
        }
    }
}
