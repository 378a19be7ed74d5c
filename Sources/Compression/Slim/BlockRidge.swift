import CBLAS

/// Ridge least squares whose features come in blocks that each only some rows use: the
/// shape of a refit of an MoE layer, where a token's row holds the gated activations of just
/// the experts it was routed to (and the gates of the novices it reaches).
///
/// With `Z` the `T × F` feature matrix (block `b` filling columns `offset_b ..< offset_b + width_b`
/// on its rows, zero elsewhere), `Y` the `T × d` target and `W₀` the `F × d` prior, it solves
///
///     (ZᵀZ + λI) W = ZᵀY + λW₀,   λ = α · mean diag(ZᵀZ)
///
/// which minimises ‖ZW − Y‖² + λ‖W − W₀‖². Scaling λ by the mean diagonal makes α independent
/// of how many tokens and how large the activations are; α → ∞ returns `W₀`, and a block no
/// row uses keeps its prior exactly. `ZᵀZ` is assembled block pair by block pair from the rows
/// the two blocks share (a few matrix products), never from a dense `Z`, in double precision.
///
/// The joint system has Σ width unknowns per output column (kept experts × intermediate size:
/// 24k for a 30B-A3B layer at 25%, a 4.6 GB Gram matrix). Past `jointLimit` it is solved by
/// block Gauss–Seidel instead: each block in turn solves its own `width × width` system
/// against the residual the others leave, which converges to the same solution (the system is
/// symmetric positive definite) with memory for one block's Gram matrix and the residual.
struct BlockRidge {
    struct Block {
        /// Rows (token indices into the target) this block's features are defined on, increasing.
        var rows: [Int]
        /// `rows.count × width`, row-major.
        var features: [Double]
        var width: Int
        /// `width × d`, row-major: the solution without data.
        var prior: [Double]
    }

    struct Singular: Error, Equatable {}

    var blocks: [Block]
    /// `T × d`, row-major.
    var target: [Double]
    var outputWidth: Int

    /// The solution, one `width × d` matrix per block: jointly up to `jointLimit` unknowns per
    /// output column, by `sweeps` block Gauss–Seidel sweeps beyond.
    func solve(alpha: Double, jointLimit: Int = 8192, sweeps: Int = 6) throws -> [[Double]] {
        precondition(alpha > 0, "the ridge factor must be positive")
        let offsets = blocks.reduce(into: [0]) { $0.append($0.last! + $1.width) }
        let n = offsets.last!
        guard n > 0 else { return blocks.map { _ in [] } }
        return n <= jointLimit ? try solveJointly(alpha: alpha, offsets: offsets) : try solveByBlocks(alpha: alpha, sweeps: sweeps)
    }

    private func solveJointly(alpha: Double, offsets: [Int]) throws -> [[Double]] {
        let d = outputWidth
        let n = offsets.last!
        var gram = [Double](repeating: 0, count: n * n)
        var right = [Double](repeating: 0, count: n * d)
        for (a, block) in blocks.enumerated() {
            // Zᵀ_a Y over the block's rows.
            let y = gather(target, rows: block.rows, width: d)
            multiply(block.features, rows: block.rows.count, block.width,
                     y, d, into: &right, at: offsets[a] * d, stride: d)
            // Zᵀ_a Z_b over the rows both use; the lower triangle gets the transpose.
            for b in a..<blocks.count {
                let (ia, ib) = Self.sharedRows(block.rows, blocks[b].rows)
                guard !ia.isEmpty else { continue }
                let za = gather(block.features, rows: ia, width: block.width)
                let zb = gather(blocks[b].features, rows: ib, width: blocks[b].width)
                var product = [Double](repeating: 0, count: block.width * blocks[b].width)
                multiply(za, rows: ia.count, block.width, zb, blocks[b].width,
                         into: &product, at: 0, stride: blocks[b].width)
                for i in 0..<block.width {
                    for j in 0..<blocks[b].width {
                        let value = product[i * blocks[b].width + j]
                        gram[(offsets[a] + i) * n + offsets[b] + j] = value
                        gram[(offsets[b] + j) * n + offsets[a] + i] = value
                    }
                }
            }
        }
        let meanDiagonal = (0..<n).reduce(0.0) { $0 + gram[$1 * n + $1] } / Double(n)
        let lambda = alpha * (meanDiagonal > 0 ? meanDiagonal : 1)
        for i in 0..<n { gram[i * n + i] += lambda }
        for (a, block) in blocks.enumerated() {
            for i in 0..<(block.width * d) { right[offsets[a] * d + i] += lambda * block.prior[i] }
        }
        try Self.solveInPlace(gram, n: n, &right, d)
        return blocks.indices.map { Array(right[(offsets[$0] * d)..<(offsets[$0 + 1] * d)]) }
    }

    /// Block Gauss–Seidel on the same normal equations: λ from the full system's mean
    /// diagonal, each block solved against `Y − Σ_{others} Z_b W_b` on its rows.
    private func solveByBlocks(alpha: Double, sweeps: Int) throws -> [[Double]] {
        let d = outputWidth
        var grams = [[Double]]()
        var diagonal = 0.0, unknowns = 0
        for block in blocks {
            var gram = [Double](repeating: 0, count: block.width * block.width)
            multiply(block.features, rows: block.rows.count, block.width, block.features, block.width,
                     into: &gram, at: 0, stride: block.width)
            diagonal += (0..<block.width).reduce(0.0) { $0 + gram[$1 * block.width + $1] }
            unknowns += block.width
            grams.append(gram)
        }
        let lambda = alpha * (diagonal > 0 ? diagonal / Double(unknowns) : 1)
        var solution = blocks.map(\.prior)
        var residual = target   // Y − Z W, kept current as blocks change
        for (a, block) in blocks.enumerated() { apply(block, solution[a], sign: -1, to: &residual) }
        for _ in 0..<sweeps {
            for (a, block) in blocks.enumerated() {
                apply(block, solution[a], sign: 1, to: &residual)   // the residual without this block
                var gram = grams[a]
                for i in 0..<block.width { gram[i * block.width + i] += lambda }
                var right = block.prior.map { lambda * $0 }
                multiply(block.features, rows: block.rows.count, block.width, gather(residual, rows: block.rows, width: d), d,
                         into: &right, at: 0, stride: d)
                try Self.solveInPlace(gram, n: block.width, &right, d)
                solution[a] = right
                apply(block, solution[a], sign: -1, to: &residual)
            }
        }
        return solution
    }

    /// `residual[rows] += sign · Z_block · w`.
    private func apply(_ block: Block, _ w: [Double], sign: Double, to residual: inout [Double]) {
        guard !block.rows.isEmpty else { return }
        let d = outputWidth
        var product = [Double](repeating: 0, count: block.rows.count * d)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(block.rows.count), Int32(d), Int32(block.width),
                    sign, block.features, Int32(block.width), w, Int32(d), 0, &product, Int32(d))
        for (i, r) in block.rows.enumerated() {
            for c in 0..<d { residual[r * d + c] += product[i * d + c] }
        }
    }

    /// Solves `A X = B` for symmetric positive definite `A` (`n × n`) and `B` (`n × d`, overwritten).
    private static func solveInPlace(_ a: [Double], n: Int, _ b: inout [Double], _ d: Int) throws {
        let lower: [Double]
        do { lower = try Cholesky.lower(a, n: n) } catch { throw Singular() }
        // L Lᵀ X = B: two triangular solves with every output column at once.
        lower.withUnsafeBufferPointer { l in
            b.withUnsafeMutableBufferPointer { b in
                cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, Int32(n), Int32(d),
                            1, l.baseAddress, Int32(n), b.baseAddress, Int32(d))
                cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, Int32(n), Int32(d),
                            1, l.baseAddress, Int32(n), b.baseAddress, Int32(d))
            }
        }
    }

    /// Positions in `a` and in `b` of the rows both contain (both increasing).
    static func sharedRows(_ a: [Int], _ b: [Int]) -> (inA: [Int], inB: [Int]) {
        var (i, j) = (0, 0)
        var inA = [Int](), inB = [Int]()
        while i < a.count && j < b.count {
            if a[i] == b[j] {
                inA.append(i); inB.append(j)
                i += 1; j += 1
            } else if a[i] < b[j] { i += 1 } else { j += 1 }
        }
        return (inA, inB)
    }

    private func gather(_ matrix: [Double], rows: [Int], width: Int) -> [Double] {
        var out = [Double]()
        out.reserveCapacity(rows.count * width)
        for r in rows { out += matrix[(r * width)..<((r + 1) * width)] }
        return out
    }

    /// `out[offset…] += aᵀ · b` (a: `rows × m`, b: `rows × k`), row stride `stride`.
    private func multiply(_ a: [Double], rows: Int, _ m: Int, _ b: [Double], _ k: Int,
                          into out: inout [Double], at offset: Int, stride: Int) {
        guard rows > 0 else { return }
        out.withUnsafeMutableBufferPointer { o in
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(k), Int32(rows),
                        1, a, Int32(m), b, Int32(k), 1, o.baseAddress! + offset, Int32(stride))
        }
    }
}
