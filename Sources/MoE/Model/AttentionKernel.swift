import CBLAS
import Foundation

/// Causal scaled-dot-product attention over the cache, one OpenBLAS product per head; heads
/// run side by side on the compute pool when there is enough work (a prefill).
enum AttentionKernel {
    /// - Parameters:
    ///   - queries: `[T, heads · keyDim]` for the T new positions, which start at `past`.
    ///   - keys, values: the layer cache including the new positions, `[past + T, kvHeads · dim]`.
    ///   - sinks: one extra logit per head in its softmax's denominator (gpt-oss), or nil.
    /// - Returns: `[T, heads · valueDim]`.
    static func attend(queries: Matrix, keys: [Float], values: [Float], past: Int, heads: Int, kvHeads: Int,
                       keyDim: Int, valueDim: Int, scale: Float, slidingWindow: Int?, sinks: [Float]? = nil) -> Matrix {
        let newCount = queries.rows
        let total = past + newCount
        let groupSize = heads / kvHeads
        var output = Matrix(zeros: newCount, heads * valueDim)
        let work = heads * newCount * total * (keyDim + valueDim)
        let parts = ComputePool.splitsBLAS && work >= ComputePool.parallelWork ? min(ComputePool.threads, heads) : 1
        queries.values.withUnsafeBufferPointer { q in
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    output.values.withUnsafeMutableBufferPointer { out in
                        // Each head reads the shared inputs and writes only its own columns of out.
                        nonisolated(unsafe) let (q, k, v, out) = (q.baseAddress!, k.baseAddress!, v.baseAddress!, out.baseAddress!)
                        ComputePool.forEachRange(rows: heads, parts: parts) { headRange in
                            var scores = [Float](repeating: 0, count: newCount * total)
                            scores.withUnsafeMutableBufferPointer { s in
                                for h in headRange {
                                    let g = h / groupSize
                                    // scores = scale · Q_h K_gᵀ   [T, total]
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(newCount), Int32(total), Int32(keyDim),
                                                scale, q + h * keyDim, Int32(heads * keyDim),
                                                k + g * keyDim, Int32(kvHeads * keyDim),
                                                0, s.baseAddress!, Int32(total))
                                    for t in 0..<newCount {
                                        let position = past + t
                                        let first = slidingWindow.map { max(0, position - $0 + 1) } ?? 0
                                        let row = UnsafeMutableBufferPointer(rebasing: s[(t * total)..<(t * total + total)])
                                        for j in 0..<first { row[j] = 0 }
                                        for j in (position + 1)..<max(total, position + 1) { row[j] = 0 }
                                        let visible = UnsafeMutableBufferPointer(rebasing: row[first...position])
                                        if let sinks { Functions.softmax(visible, sink: sinks[h]) } else { Functions.softmax(visible) }
                                    }
                                    // out_h = P · V_g   [T, valueDim]
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(newCount), Int32(valueDim), Int32(total),
                                                1, s.baseAddress!, Int32(total),
                                                v + g * valueDim, Int32(kvHeads * valueDim),
                                                0, out + h * valueDim, Int32(heads * valueDim))
                                }
                            }
                        }
                    }
                }
            }
        }
        return output
    }
}
