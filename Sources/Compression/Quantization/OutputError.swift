import CBLAS
import MoE

/// `tr(ΔW·H·ΔWᵀ)` with `ΔW = original − quantized` `[out, in]` and an input Hessian `H`
/// `[in, in]` (row-major). With `H = 2·XᵀX` this equals `2·‖X·ΔWᵀ‖²_F`, the summed squared
/// output error over the calibration tokens, without running them again: the cheap proxy
/// for MC-MoE's per-expert quantization loss (METHODS.md §10).
public func outputError(original: Matrix, quantized: Matrix, hessian: [Double]) -> Double {
    precondition(original.rows == quantized.rows && original.columns == quantized.columns, "outputError: shapes differ")
    let n = original.columns, rows = original.rows
    precondition(hessian.count == n * n, "outputError: Hessian has \(hessian.count) entries, expected \(n * n)")
    guard rows > 0, n > 0 else { return 0 }
    let delta = zip(original.values, quantized.values).map { Double($0) - Double($1) }
    var product = [Double](repeating: 0, count: rows * n)  // ΔW·H
    delta.withUnsafeBufferPointer { dp in
        hessian.withUnsafeBufferPointer { hp in
            product.withUnsafeMutableBufferPointer { pp in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(n), Int32(n),
                            1, dp.baseAddress, Int32(n), hp.baseAddress, Int32(n), 0, pp.baseAddress, Int32(n))
            }
        }
    }
    return zip(product, delta).reduce(0) { $0 + $1.0 * $1.1 }
}
