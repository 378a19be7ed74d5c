import CBLAS

/// Dense products on top of OpenBLAS. Everything here is row-major.
public enum LinearAlgebra {
    /// `x · Wᵀ` for activations `x` `[n, in]` and a weight `W` `[out, in]`: the linear layer.
    public static func linear(_ x: Matrix, _ weight: Matrix) -> Matrix {
        precondition(x.columns == weight.columns, "linear: input has \(x.columns) features, weight expects \(weight.columns)")
        var out = Matrix(zeros: x.rows, weight.rows)
        if x.rows == 1 {
            // Decode path: one matrix-vector product.
            weight.values.withUnsafeBufferPointer { w in
                x.values.withUnsafeBufferPointer { v in
                    out.values.withUnsafeMutableBufferPointer { y in
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(weight.rows), Int32(weight.columns),
                                    1, w.baseAddress, Int32(weight.columns), v.baseAddress, 1, 0, y.baseAddress, 1)
                    }
                }
            }
            return out
        }
        gemm(x.values, rows: x.rows, inner: x.columns, weight.values, columns: weight.rows, transposeB: true, into: &out.values)
        return out
    }

    /// `a · b` for `a` `[n, k]` and `b` `[k, m]`.
    public static func matmul(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.columns == b.rows, "matmul: \(a.rows)x\(a.columns) · \(b.rows)x\(b.columns)")
        var out = Matrix(zeros: a.rows, b.columns)
        gemm(a.values, rows: a.rows, inner: a.columns, b.values, columns: b.columns, transposeB: false, into: &out.values)
        return out
    }

    /// C[rows, columns] = A[rows, inner] · op(B), with op(B) = Bᵀ when `transposeB` (B stored `[columns, inner]`).
    static func gemm(_ a: [Float], rows: Int, inner: Int, _ b: [Float], columns: Int, transposeB: Bool, into c: inout [Float]) {
        guard rows > 0, columns > 0 else { return }
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                                Int32(rows), Int32(columns), Int32(inner), 1,
                                ap.baseAddress, Int32(inner),
                                bp.baseAddress, Int32(transposeB ? inner : columns),
                                0, cp.baseAddress, Int32(columns))
                }
            }
        }
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
