import CBLAS

/// Cholesky factorisations of dense symmetric matrices (row-major `n×n`, Double), as GPTQ
/// needs them.
enum Cholesky {
    /// The factorisation stopped at this pivot: the matrix is not (numerically) positive definite.
    struct NotPositiveDefinite: Error, Equatable {
        let pivot: Int
    }

    /// Columns per block of the blocked factorisation: the diagonal blocks are factorised with
    /// plain loops, everything else is BLAS-3 (a triangular solve and a rank-k update).
    static let blockSize = 64

    /// The lower factor `L` of `A = L·Lᵀ` (only `A`'s lower triangle is read).
    static func lower(_ a: [Double], n: Int) throws(NotPositiveDefinite) -> [Double] {
        precondition(a.count == n * n)
        var l = a
        try l.withUnsafeMutableBufferPointer { (buffer) throws(NotPositiveDefinite) in
            let base = buffer.baseAddress!
            for k0 in stride(from: 0, to: n, by: blockSize) {
                let kb = Swift.min(blockSize, n - k0), below = n - k0 - kb
                // Diagonal block, already updated by the earlier blocks' rank-k updates.
                for j in k0..<(k0 + kb) {
                    let rowJ = base + j * n
                    let pivot = rowJ[j] - cblas_ddot(Int32(j - k0), rowJ + k0, 1, rowJ + k0, 1)
                    guard pivot > 0, pivot.isFinite else { throw NotPositiveDefinite(pivot: j) }
                    let diagonal = pivot.squareRoot()
                    rowJ[j] = diagonal
                    for i in (j + 1)..<(k0 + kb) {
                        let rowI = base + i * n
                        rowI[j] = (rowI[j] - cblas_ddot(Int32(j - k0), rowI + k0, 1, rowJ + k0, 1)) / diagonal
                    }
                }
                guard below > 0 else { continue }
                let diagonalBlock = base + k0 * n + k0, panel = base + (k0 + kb) * n + k0
                // Panel below the block: L21 = A21 · L11⁻ᵀ.
                cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, Int32(below), Int32(kb),
                            1, diagonalBlock, Int32(n), panel, Int32(n))
                // Trailing matrix: A22 -= L21 · L21ᵀ (lower triangle).
                cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, Int32(below), Int32(kb),
                            -1, panel, Int32(n), 1, panel + kb, Int32(n))
            }
        }
        for i in 0..<n { for j in (i + 1)..<n { l[i * n + j] = 0 } }
        return l
    }

    /// The upper factor `U` of `A⁻¹ = Uᵀ·U`, the form GPTQ's error feedback uses: row `j` of
    /// `U` right of the diagonal tells how the error of column `j` spreads onto later columns.
    ///
    /// The reference forms `A⁻¹` and factorises it again; this gets the same factor with one
    /// factorisation. With `J` the order-reversing permutation, factorise `J·A·J = L·Lᵀ`; then
    /// `A = R·Rᵀ` with `R = J·L·J` upper triangular, so `A⁻¹ = R⁻ᵀ·R⁻¹` and `U = R⁻¹` (upper
    /// triangular with a positive diagonal, hence the unique Cholesky factor).
    static func upperFactorOfInverse(_ a: [Double], n: Int) throws(NotPositiveDefinite) -> [Double] {
        var reversed = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { reversed[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)] } }
        let l: [Double]
        do {
            l = try lower(reversed, n: n)
        } catch {
            throw NotPositiveDefinite(pivot: n - 1 - error.pivot)   // in A's own column order
        }
        var r = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { r[i * n + j] = l[(n - 1 - i) * n + (n - 1 - j)] } }
        var u = [Double](repeating: 0, count: n * n)
        for i in 0..<n { u[i * n + i] = 1 }
        r.withUnsafeBufferPointer { rp in
            u.withUnsafeMutableBufferPointer { up in
                cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, Int32(n), Int32(n),
                            1, rp.baseAddress, Int32(n), up.baseAddress, Int32(n))   // R·U = I
            }
        }
        return u
    }
}
