import CBLAS
import CKernels
import Dispatch
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

    /// Multiply-adds above which a small-batch product is split over the cores.
    public static let parallelWork = 1 << 21
    public static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// `y[i * stride + r] = Σ_c W[r, c] · x[i, c]` for `count` input rows: the one place that
    /// picks the dense kernel, so every f32 weight (loaded, mapped from the store or dequantized
    /// block by block) gives bit-identical results for the same inputs. One row: sgemv;
    /// 2...`smallBatchLimit` rows: `moe_f32_matmul`; more: sgemm.
    public static func linear(_ x: UnsafePointer<Float>, count: Int, _ weight: UnsafePointer<Float>, rows: Int, columns: Int,
                              into y: UnsafeMutablePointer<Float>, stride: Int) {
        guard count > 0, rows > 0 else { return }
        if count == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(columns), 1, weight, Int32(columns), x, 1, 0, y, 1)
        } else if count <= smallBatchLimit {
            // A large product (the output head) is split by weight rows over the cores, as
            // OpenBLAS threads its sgemv; each result is computed the same way in any split.
            let parts = count * rows * columns >= parallelWork ? min(cores, rows / 64) : 1
            if parts <= 1 {
                moe_f32_matmul(weight, x, y, count, rows, columns, stride)
            } else {
                let chunk = (rows + parts - 1) / parts
                // The parts write disjoint columns of y and only read weight and x.
                nonisolated(unsafe) let (w, input, output) = (weight, x, y)
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    let start = part * chunk, end = min(rows, start + chunk)
                    if start < end { moe_f32_matmul(w + start * columns, input, output + start, count, end - start, columns, stride) }
                }
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(rows), Int32(columns), 1,
                        x, Int32(columns), weight, Int32(columns), 0, y, Int32(stride))
        }
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
