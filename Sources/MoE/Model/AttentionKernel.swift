import CBLAS
import Foundation

/// Causal scaled-dot-product attention over the cache, one OpenBLAS product per head.
enum AttentionKernel {
    /// - Parameters:
    ///   - queries: `[T, heads · keyDim]` for the T new positions, which start at `past`.
    ///   - keys, values: the layer cache including the new positions, `[past + T, kvHeads · dim]`.
    /// - Returns: `[T, heads · valueDim]`.
    static func attend(queries: Matrix, keys: [Float], values: [Float], past: Int, heads: Int, kvHeads: Int,
                       keyDim: Int, valueDim: Int, scale: Float, slidingWindow: Int?) -> Matrix {
        let newCount = queries.rows
        let total = past + newCount
        let groupSize = heads / kvHeads
        var output = Matrix(zeros: newCount, heads * valueDim)
        var scores = [Float](repeating: 0, count: newCount * total)
        queries.values.withUnsafeBufferPointer { q in
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    output.values.withUnsafeMutableBufferPointer { out in
                        scores.withUnsafeMutableBufferPointer { s in
                            for h in 0..<heads {
                                let g = h / groupSize
                                // scores = scale · Q_h K_gᵀ   [T, total]
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(newCount), Int32(total), Int32(keyDim),
                                            scale, q.baseAddress! + h * keyDim, Int32(heads * keyDim),
                                            k.baseAddress! + g * keyDim, Int32(kvHeads * keyDim),
                                            0, s.baseAddress!, Int32(total))
                                for t in 0..<newCount {
                                    let position = past + t
                                    let first = slidingWindow.map { max(0, position - $0 + 1) } ?? 0
                                    let row = UnsafeMutableBufferPointer(rebasing: s[(t * total)..<(t * total + total)])
                                    for j in 0..<first { row[j] = 0 }
                                    for j in (position + 1)..<max(total, position + 1) { row[j] = 0 }
                                    Functions.softmax(UnsafeMutableBufferPointer(rebasing: row[first...position]))
                                }
                                // out_h = P · V_g   [T, valueDim]
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(newCount), Int32(valueDim), Int32(total),
                                            1, s.baseAddress!, Int32(total),
                                            v.baseAddress! + g * valueDim, Int32(kvHeads * valueDim),
                                            0, out.baseAddress! + h * valueDim, Int32(heads * valueDim))
                            }
                        }
                    }
                }
            }
        }
        return output
    }
}
