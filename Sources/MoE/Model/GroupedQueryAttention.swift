/// Grouped-query attention (Mixtral, Qwen, OLMoE, gpt-oss): q/k/v projections with optional
/// bias, optional q/k RMSNorm (per head or over the whole projection), optional clamping, RoPE,
/// an optional output bias and attention sinks, and this layer's sliding window if any.
struct GroupedQueryAttention: Sendable {
    let config: AttentionDescription
    let q, k, v, o: any LinearWeight
    let qBias, kBias, vBias, oBias: [Float]?
    let qNorm, kNorm: [Float]?
    /// One logit per head that joins the softmax's denominator (gpt-oss).
    let sinks: [Float]?
    /// Keys older than this many positions are masked in this layer; nil: full attention.
    let slidingWindow: Int?

    init(layer l: Int, description d: ModelDescription, tensors: some TensorProvider, precision: WeightPrecision) throws {
        let a = d.attention
        let n = d.names
        config = a
        let (heads, kvHeads, headDim, hidden) = (a.headCount, a.keyValueHeadCount, a.queryKeyHeadDim, d.hiddenSize)
        q = try tensors.weight(n.attention(l, "q_proj.weight"), shape: [heads * headDim, hidden], precision: precision)
        k = try tensors.weight(n.attention(l, "k_proj.weight"), shape: [kvHeads * headDim, hidden], precision: precision)
        v = try tensors.weight(n.attention(l, "v_proj.weight"), shape: [kvHeads * headDim, hidden], precision: precision)
        o = try tensors.weight(n.attention(l, "o_proj.weight"), shape: [hidden, heads * headDim], precision: precision)
        if a.qkvBias {
            qBias = try tensors.vector(n.attention(l, "q_proj.bias"), count: heads * headDim)
            kBias = try tensors.vector(n.attention(l, "k_proj.bias"), count: kvHeads * headDim)
            vBias = try tensors.vector(n.attention(l, "v_proj.bias"), count: kvHeads * headDim)
        } else {
            (qBias, kBias, vBias) = (nil, nil, nil)
        }
        oBias = a.outputBias ? try tensors.vector(n.attention(l, "o_proj.bias"), count: hidden) : nil
        sinks = a.sinks ? try tensors.vector(n.attention(l, "sinks"), count: heads) : nil
        slidingWindow = a.slidingWindow(layer: l)
        switch a.qkNorm {
        case .none:
            (qNorm, kNorm) = (nil, nil)
        case .perHead:
            qNorm = try tensors.vector(n.attention(l, "q_norm.weight"), count: headDim)
            kNorm = try tensors.vector(n.attention(l, "k_norm.weight"), count: headDim)
        case .wholeProjection:
            qNorm = try tensors.vector(n.attention(l, "q_norm.weight"), count: heads * headDim)
            kNorm = try tensors.vector(n.attention(l, "k_norm.weight"), count: kvHeads * headDim)
        }
    }

    /// Attention for the stacked rows of one or more sequences (`segments`), each extending its own cache.
    func forward(_ x: Matrix, rope: RotaryEmbedding, caches: inout [KVCache.Layer], segments: [SequenceSegment], epsilon: Float) -> Matrix {
        var queries = q.linear(x)
        var keys = k.linear(x)
        var values = v.linear(x)
        if let qBias { LinearAlgebra.addBias(&queries, qBias) }
        if let kBias { LinearAlgebra.addBias(&keys, kBias) }
        if let vBias { LinearAlgebra.addBias(&values, vBias) }
        if let qNorm, let kNorm {
            Functions.rmsNorm(&queries, weight: qNorm, epsilon: epsilon)
            Functions.rmsNorm(&keys, weight: kNorm, epsilon: epsilon)
        }
        if let clip = config.clipQKV {
            for i in queries.values.indices { queries.values[i] = min(max(queries.values[i], -clip), clip) }
            for i in keys.values.indices { keys.values[i] = min(max(keys.values[i], -clip), clip) }
            for i in values.values.indices { values.values[i] = min(max(values.values[i], -clip), clip) }
        }
        let headDim = config.queryKeyHeadDim
        let attended = segments.stackingRows(of: [queries, keys, values]) { s, qkv in
            var (queries, keys) = (qkv[0], qkv[1])
            let past = segments[s].past
            rope.apply(&queries, heads: config.headCount, headDim: headDim, startPosition: past)
            rope.apply(&keys, heads: config.keyValueHeadCount, headDim: headDim, startPosition: past)
            caches[s].keys.append(contentsOf: keys.values)
            caches[s].values.append(contentsOf: qkv[2].values)
            return AttentionKernel.attend(
                queries: queries, keys: caches[s].keys, values: caches[s].values, past: past,
                heads: config.headCount, kvHeads: config.keyValueHeadCount, keyDim: headDim, valueDim: headDim,
                scale: config.softmaxScale, slidingWindow: slidingWindow, sinks: sinks)
        }
        var output = o.linear(attended)
        if let oBias { LinearAlgebra.addBias(&output, oBias) }
        return output
    }
}
