import CBLAS
import MoE

/// Why GPTQ fell back to round-to-nearest for a matrix.
public enum GPTQFallbackReason: Error, Sendable, Equatable, CustomStringConvertible {
    /// The damped Hessian has no Cholesky factor: the factorisation, which runs from the last
    /// column to the first, broke down at this column.
    case hessianNotPositiveDefinite(column: Int)
    /// The Hessian holds NaN or infinity.
    case nonFiniteHessian
    /// Error feedback pushed a weight outside the half-precision range of scales and minimums.
    case updatedWeightOutOfRange(row: Int, column: Int)

    public var description: String {
        switch self {
        case .hessianNotPositiveDefinite(let column): "Hessian not positive definite after damping (column \(column))"
        case .nonFiniteHessian: "Hessian has non-finite entries"
        case .updatedWeightOutOfRange(let row, let column): "updated weight [\(row), \(column)] left the representable range"
        }
    }
}

/// A GPTQ result: the matrix, and whether GPTQ actually ran.
public struct GPTQResult: Sendable {
    public let matrix: QuantizedMatrix
    /// nil when GPTQ ran; otherwise why the matrix is round-to-nearest instead.
    public let fallback: GPTQFallbackReason?
    /// Inputs whose Hessian diagonal was zero (never active in calibration); their weights were zeroed.
    public let deadInputs: Int
}

/// GPTQ (Frantar et al., 2022) into the group-wise affine format of `QuantizedMatrix`.
///
/// Columns (inputs) are quantized left to right; each column's rounding error is divided by
/// the pivot of `U = chol(H⁻¹)ᵀ` and fed back onto the columns not yet quantized, in proportion
/// to the rows of `U`, which minimises the extra output error `tr(ΔW·H·ΔWᵀ)` that the later
/// columns can still absorb. As in the reference, the feedback is applied within a block of
/// columns right away and to the columns after the block in one matrix product per block.
/// Unlike the reference (whose in-block copy leaves groups smaller than the block with stale
/// parameters), each group's scale and minimum come from the *current* weights of its columns,
/// all updated by the time the group starts, because blocks are whole groups.
public struct GPTQ: Sendable {
    public var format: QuantizationFormat
    /// Damping added to the Hessian's diagonal, as a fraction of the diagonal's mean.
    public var dampingFraction: Double
    /// Columns per lazy-update block (rounded down to whole groups).
    public var blockSize: Int

    public init(format: QuantizationFormat, dampingFraction: Double = 0.01, blockSize: Int = 128) {
        precondition(dampingFraction >= 0 && blockSize > 0)
        self.format = format
        self.dampingFraction = dampingFraction
        self.blockSize = blockSize
    }

    /// Quantizes `weight` `[out, in]` given the input Hessian `H = 2·XᵀX` `[in, in]` (row-major).
    /// Falls back to round-to-nearest (with the reason) when `H` cannot be factorised.
    public func quantize(_ weight: Matrix, hessian: [Double]) throws(QuantizationError) -> GPTQResult {
        let n = weight.columns
        guard hessian.count == n * n else { throw .hessianShapeMismatch(expected: n * n, actual: hessian.count) }
        try QuantizedMatrix.checkQuantizable(weight, format: format)
        func roundToNearest(_ reason: GPTQFallbackReason, dead: Int = 0) throws(QuantizationError) -> GPTQResult {
            GPTQResult(matrix: try QuantizedMatrix(quantizing: weight, format: format), fallback: reason, deadInputs: dead)
        }
        guard hessian.allSatisfy(\.isFinite) else { return try roundToNearest(.nonFiniteHessian) }

        // Dead inputs carry no information: give them a unit diagonal and zero weights.
        var h = hessian
        var transposed = weight.transposed().values.map(Double.init)   // [in, out]: row j = column j of W
        let out = weight.rows
        var dead = 0
        for j in 0..<n where h[j * n + j] == 0 {
            h[j * n + j] = 1
            for r in 0..<out { transposed[j * out + r] = 0 }
            dead += 1
        }
        let damping = dampingFraction * (0..<n).reduce(0) { $0 + h[$1 * n + $1] } / Double(Swift.max(n, 1))
        for j in 0..<n { h[j * n + j] += damping }

        let u: [Double]
        do {
            u = try Cholesky.upperFactorOfInverse(h, n: n)
        } catch {
            return try roundToNearest(.hessianNotPositiveDefinite(column: error.pivot), dead: dead)
        }

        let groupSize = format.groupSize, groupsPerRow = n / groupSize
        let block = Swift.max(groupSize, blockSize / groupSize * groupSize)
        var codes = [UInt8](repeating: 0, count: out * n)
        var scales = [UInt16](repeating: 0, count: out * groupsPerRow)
        var minimums = [UInt16](repeating: 0, count: out * groupsPerRow)
        var grids = [AffineGrid]()
        var errors = [Double](repeating: 0, count: block * out)   // scaled errors of the block's columns

        for blockStart in stride(from: 0, to: n, by: block) {
            let blockEnd = Swift.min(blockStart + block, n)
            for j in blockStart..<blockEnd {
                if j % groupSize == 0 {
                    // Parameters of the group from its current (error-fed) weights.
                    grids.removeAll(keepingCapacity: true)
                    for r in 0..<out {
                        var low = Float.infinity, high = -Float.infinity
                        for c in j..<(j + groupSize) {
                            let w = Float(transposed[c * out + r])
                            guard AffineGrid.isRepresentable(w) else {
                                return try roundToNearest(.updatedWeightOutOfRange(row: r, column: c), dead: dead)
                            }
                            low = Swift.min(low, w)
                            high = Swift.max(high, w)
                        }
                        let grid = AffineGrid(low: low, high: high, maximumCode: format.maximumCode)
                        grids.append(grid)
                        scales[r * groupsPerRow + j / groupSize] = grid.scaleBits
                        minimums[r * groupsPerRow + j / groupSize] = grid.minimumBits
                    }
                }
                let pivot = u[j * n + j]
                let errorRow = (j - blockStart) * out
                for r in 0..<out {
                    let w = transposed[j * out + r]
                    let code = grids[r].code(for: Float(w))
                    codes[r * n + j] = code
                    errors[errorRow + r] = (w - Double(grids[r].value(of: code))) / pivot
                }
                // Feed the error onto the rest of the block now: W[:, k] -= err · U[j, k].
                errors.withUnsafeBufferPointer { ep in
                    transposed.withUnsafeMutableBufferPointer { tp in
                        for k in (j + 1)..<blockEnd where u[j * n + k] != 0 {
                            cblas_daxpy(Int32(out), -u[j * n + k], ep.baseAddress! + errorRow, 1, tp.baseAddress! + k * out, 1)
                        }
                    }
                }
            }
            // And onto every later column at once: W[:, end...] -= Errᵀ · U[block, end...].
            if blockEnd < n {
                let width = blockEnd - blockStart
                u.withUnsafeBufferPointer { up in
                    errors.withUnsafeBufferPointer { ep in
                        transposed.withUnsafeMutableBufferPointer { tp in
                            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n - blockEnd), Int32(out), Int32(width),
                                        -1, up.baseAddress! + blockStart * n + blockEnd, Int32(n),
                                        ep.baseAddress, Int32(out), 1, tp.baseAddress! + blockEnd * out, Int32(out))
                        }
                    }
                }
            }
        }
        let matrix = try QuantizedMatrix(rows: out, columns: n, format: format,
                                         packed: BitPacking.pack(codes, bits: format.bits), scales: scales, minimums: minimums)
        return GPTQResult(matrix: matrix, fallback: nil, deadInputs: dead)
    }
}
