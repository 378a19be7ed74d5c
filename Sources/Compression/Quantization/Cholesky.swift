import CBLAS

/// Cholesky factorisations of dense symmetric matrices (row-major `n×n`, Double), as GPTQ
/// needs them.
enum Cholesky {
    /// The factorisation stopped at this pivot: the matrix is not (numerically) positive definite.
    struct NotPositiveDefinite: Error, Equatable {
        let pivot: Int
    }

    /// The lower factor `L` of `A = L·Lᵀ`.
    static func lower(_ a: [Double], n: Int) throws(NotPositiveDefinite) -> [Double] {
        precondition(a.count == n * n)
        var l = [Double](repeating: 0, count: n * n)
        try l.withUnsafeMutableBufferPointer { (lp) throws(NotPositiveDefinite) in
            let base = lp.baseAddress!
            for j in 0..<n {
                // Row j of L left of the diagonal is final, so each entry is a dot product of
                // two row prefixes (contiguous in row-major storage).
                let rowJ = base + j * n
                let pivot = a[j * n + j] - cblas_ddot(Int32(j), rowJ, 1, rowJ, 1)
                guard pivot > 0, pivot.isFinite else { throw NotPositiveDefinite(pivot: j) }
                let diagonal = pivot.squareRoot()
                rowJ[j] = diagonal
                for i in (j + 1)..<n {
                    let rowI = base + i * n
                    rowI[j] = (a[i * n + j] - cblas_ddot(Int32(j), rowI, 1, rowJ, 1)) / diagonal
                }
            }
        }
        return l
    }

    /// The upper factor `U` of `A⁻¹ = Uᵀ·U`, the form GPTQ's error feedback uses: row `j` of
    /// `U` right of the diagonal tells how the error of column `j` spreads onto later columns.
    /// Computed as in the reference: `A = L·Lᵀ`, `A⁻¹ = L⁻ᵀ·L⁻¹`, then `U = chol(A⁻¹)ᵀ`.
    static func upperFactorOfInverse(_ a: [Double], n: Int) throws(NotPositiveDefinite) -> [Double] {
        var inverseL = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inverseL[i * n + i] = 1 }
        let l = try lower(a, n: n)
        l.withUnsafeBufferPointer { lp in
            inverseL.withUnsafeMutableBufferPointer { xp in
                cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, Int32(n), Int32(n),
                            1, lp.baseAddress, Int32(n), xp.baseAddress, Int32(n))
            }
        }
        var inverse = [Double](repeating: 0, count: n * n)
        inverseL.withUnsafeBufferPointer { xp in
            inverse.withUnsafeMutableBufferPointer { cp in
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n),
                            1, xp.baseAddress, Int32(n), xp.baseAddress, Int32(n), 0, cp.baseAddress, Int32(n))
            }
        }
        let lowerOfInverse = try lower(inverse, n: n)
        var upper = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in i..<n { upper[i * n + k] = lowerOfInverse[k * n + i] } }
        return upper
    }
}
