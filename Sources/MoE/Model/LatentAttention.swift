/// Multi-head latent attention (DeepSeek-V2/V3). Queries come from a low-rank path
/// (`q_a_proj` → norm → `q_b_proj`) or a plain `q_proj`; keys and values are expanded
/// from a normalised latent (`kv_a_proj_with_mqa` → `kv_a_layernorm` → `kv_b_proj`), plus
/// one RoPE key part shared by all heads.
struct LatentAttention: Sendable {
    let config: AttentionDescription
    let latent: LatentAttentionDescription
    let qProj: (any LinearWeight)?
    let qA: (any LinearWeight)?, qANorm: [Float]?, qB: (any LinearWeight)?
    let kvA: any LinearWeight, kvANorm: [Float], kvB: any LinearWeight, o: any LinearWeight

    init(layer l: Int, description d: ModelDescription, tensors: some TensorProvider, precision: WeightPrecision) throws {
        let a = d.attention
        let m = a.latent!
        let n = d.names
        config = a
        latent = m
        let heads = a.headCount
        let qkDim = a.queryKeyHeadDim
        if let rank = m.queryLoraRank {
            qProj = nil
            qA = try tensors.weight(n.attention(l, "q_a_proj.weight"), shape: [rank, d.hiddenSize], precision: precision)
            qANorm = try tensors.vector(n.attention(l, "q_a_layernorm.weight"), count: rank)
            qB = try tensors.weight(n.attention(l, "q_b_proj.weight"), shape: [heads * qkDim, rank], precision: precision)
        } else {
            qProj = try tensors.weight(n.attention(l, "q_proj.weight"), shape: [heads * qkDim, d.hiddenSize], precision: precision)
            (qA, qANorm, qB) = (nil, nil, nil)
        }
        kvA = try tensors.weight(n.attention(l, "kv_a_proj_with_mqa.weight"), shape: [m.keyValueLoraRank + m.ropeHeadDim, d.hiddenSize], precision: precision)
        kvANorm = try tensors.vector(n.attention(l, "kv_a_layernorm.weight"), count: m.keyValueLoraRank)
        kvB = try tensors.weight(n.attention(l, "kv_b_proj.weight"),
                                 shape: [heads * (m.noPositionHeadDim + a.valueHeadDim), m.keyValueLoraRank], precision: precision)
        o = try tensors.weight(n.attention(l, "o_proj.weight"), shape: [d.hiddenSize, heads * a.valueHeadDim], precision: precision)
        if a.qkvBias || a.outputBias {
            throw CheckpointError.malformedConfig(file: "config.json", reason: "attention_bias is not supported for latent attention")
        }
    }

    /// Attention for the stacked rows of one or more sequences (`segments`), each extending its own cache.
    func forward(_ x: Matrix, rope: RotaryEmbedding, caches: inout [KVCache.Layer], segments: [SequenceSegment], epsilon: Float) -> Matrix {
        let heads = config.headCount
        let (nope, ropeDim, valueDim, rank) = (latent.noPositionHeadDim, latent.ropeHeadDim, config.valueHeadDim, latent.keyValueLoraRank)
        let qkDim = nope + ropeDim
        let allQueries: Matrix
        if let qProj {
            allQueries = qProj.linear(x)
        } else {
            var compressed = qA!.linear(x)
            Functions.rmsNorm(&compressed, weight: qANorm!, epsilon: epsilon)
            allQueries = qB!.linear(compressed)
        }
        let compressedKV = kvA.linear(x)             // [T, rank + ropeDim]
        var kvLatent = compressedKV.columns(0..<rank)
        Functions.rmsNorm(&kvLatent, weight: kvANorm, epsilon: epsilon)
        let allRopeKeys = compressedKV.columns(rank..<(rank + ropeDim))
        let allExpanded = kvB.linear(kvLatent)       // [T, heads · (nope + valueDim)]

        let attended = segments.stackingRows(of: [allQueries, allRopeKeys, allExpanded]) { s, parts in
            let past = segments[s].past
            var (queries, sharedRopeKey) = (parts[0], parts[1])
            let expanded = parts[2]
            // The rope part is the tail of each query head; one rope key is shared by all heads.
            rope.apply(&queries, heads: heads, headDim: qkDim, offset: nope, startPosition: past)
            rope.apply(&sharedRopeKey, heads: 1, headDim: ropeDim, startPosition: past)
            // Per-head keys [nope | rope] and values, appended to the cache.
            let newCount = queries.rows
            var keys = [Float](repeating: 0, count: newCount * heads * qkDim)
            var values = [Float](repeating: 0, count: newCount * heads * valueDim)
            for t in 0..<newCount {
                for h in 0..<heads {
                    let source = t * expanded.columns + h * (nope + valueDim)
                    let keyBase = (t * heads + h) * qkDim
                    for i in 0..<nope { keys[keyBase + i] = expanded.values[source + i] }
                    for i in 0..<ropeDim { keys[keyBase + nope + i] = sharedRopeKey.values[t * ropeDim + i] }
                    let valueBase = (t * heads + h) * valueDim
                    for i in 0..<valueDim { values[valueBase + i] = expanded.values[source + nope + i] }
                }
            }
            caches[s].keys.append(contentsOf: keys)
            caches[s].values.append(contentsOf: values)
            return AttentionKernel.attend(
                queries: queries, keys: caches[s].keys, values: caches[s].values, past: past, heads: heads, kvHeads: heads,
                keyDim: qkDim, valueDim: valueDim, scale: config.softmaxScale, slidingWindow: nil)
        }
        return o.linear(attended)
    }
}
