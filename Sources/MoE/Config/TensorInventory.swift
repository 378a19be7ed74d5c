/// Every tensor a model of a given description reads, with its shape: the checklist for
/// validating a checkpoint, and the list of names to write when exporting one.
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// Expert tensors are stored one record per expert; everything else is dense.
    public var expert: (layer: Int, index: Int, projection: Projection)?

    public static func == (a: TensorSpec, b: TensorSpec) -> Bool {
        a.name == b.name && a.shape == b.shape && a.expert?.layer == b.expert?.layer
            && a.expert?.index == b.expert?.index && a.expert?.projection == b.expert?.projection
    }
}

extension ModelDescription {
    /// Dense tensors first (in layer order), then routed expert tensors.
    public var tensorInventory: [TensorSpec] {
        let n = names
        let h = hiddenSize
        var specs = [TensorSpec(name: n.embedding, shape: [vocabularySize, h])]
        for l in 0..<layerCount { specs += layerTensors(l, layers[l]) }
        specs.append(TensorSpec(name: n.finalNorm, shape: [h]))
        if !tieWordEmbeddings { specs.append(TensorSpec(name: n.outputHead, shape: [vocabularySize, h])) }
        for l in moeLayerIndices { specs += expertTensors(l, layers[l].moe!, asRecords: true) }
        return specs
    }

    /// The multi-token-prediction layers' tensors (`predictionLayers`): each is a whole
    /// decoder layer, experts included, plus the projection and norms that join the next
    /// token's embedding to the last hidden state. All are listed as dense tensors: they are
    /// kept in the store byte for byte, and nothing routes to their experts. The layers may
    /// share the model's embedding and head (GLM-4.5 does), so `embed_tokens` and
    /// `shared_head.head` are not required.
    public var predictionLayerInventory: [TensorSpec] {
        let (n, h) = (names, hiddenSize)
        var specs = [TensorSpec]()
        for (i, feedForward) in (predictionLayers ?? []).enumerated() {
            let l = layerCount + i
            specs += layerTensors(l, feedForward)
            specs.append(TensorSpec(name: n.predictionProjection(l), shape: [h, 2 * h]))
            for norm in [n.predictionEmbeddingNorm(l), n.predictionHiddenNorm(l), n.predictionHeadNorm(l)] {
                specs.append(TensorSpec(name: norm, shape: [h]))
            }
            if let moe = feedForward.moe { specs += expertTensors(l, moe, asRecords: false) }
        }
        return specs
    }

    /// One decoder layer's tensors other than its routed experts.
    private func layerTensors(_ l: Int, _ feedForward: FeedForwardDescription) -> [TensorSpec] {
        let n = names
        let h = hiddenSize
        let a = attention
        var specs = [TensorSpec(name: n.inputNorm(l), shape: [h]), TensorSpec(name: n.postAttentionNorm(l), shape: [h])]
        if let m = a.latent {
            if let rank = m.queryLoraRank {
                specs.append(TensorSpec(name: n.attention(l, "q_a_proj.weight"), shape: [rank, h]))
                specs.append(TensorSpec(name: n.attention(l, "q_a_layernorm.weight"), shape: [rank]))
                specs.append(TensorSpec(name: n.attention(l, "q_b_proj.weight"), shape: [a.headCount * a.queryKeyHeadDim, rank]))
            } else {
                specs.append(TensorSpec(name: n.attention(l, "q_proj.weight"), shape: [a.headCount * a.queryKeyHeadDim, h]))
            }
            specs.append(TensorSpec(name: n.attention(l, "kv_a_proj_with_mqa.weight"), shape: [m.keyValueLoraRank + m.ropeHeadDim, h]))
            specs.append(TensorSpec(name: n.attention(l, "kv_a_layernorm.weight"), shape: [m.keyValueLoraRank]))
            specs.append(TensorSpec(name: n.attention(l, "kv_b_proj.weight"),
                                    shape: [a.headCount * (m.noPositionHeadDim + a.valueHeadDim), m.keyValueLoraRank]))
            specs.append(TensorSpec(name: n.attention(l, "o_proj.weight"), shape: [h, a.headCount * a.valueHeadDim]))
        } else {
            let (q, kv) = (a.headCount * a.queryKeyHeadDim, a.keyValueHeadCount * a.queryKeyHeadDim)
            specs.append(TensorSpec(name: n.attention(l, "q_proj.weight"), shape: [q, h]))
            specs.append(TensorSpec(name: n.attention(l, "k_proj.weight"), shape: [kv, h]))
            specs.append(TensorSpec(name: n.attention(l, "v_proj.weight"), shape: [kv, h]))
            specs.append(TensorSpec(name: n.attention(l, "o_proj.weight"), shape: [h, q]))
            if a.qkvBias {
                specs.append(TensorSpec(name: n.attention(l, "q_proj.bias"), shape: [q]))
                specs.append(TensorSpec(name: n.attention(l, "k_proj.bias"), shape: [kv]))
                specs.append(TensorSpec(name: n.attention(l, "v_proj.bias"), shape: [kv]))
            }
            if a.outputBias { specs.append(TensorSpec(name: n.attention(l, "o_proj.bias"), shape: [h])) }
            if a.sinks { specs.append(TensorSpec(name: n.attention(l, "sinks"), shape: [a.headCount])) }
            switch a.qkNorm {
            case .none: break
            case .perHead:
                specs.append(TensorSpec(name: n.attention(l, "q_norm.weight"), shape: [a.queryKeyHeadDim]))
                specs.append(TensorSpec(name: n.attention(l, "k_norm.weight"), shape: [a.queryKeyHeadDim]))
            case .wholeProjection:
                specs.append(TensorSpec(name: n.attention(l, "q_norm.weight"), shape: [q]))
                specs.append(TensorSpec(name: n.attention(l, "k_norm.weight"), shape: [kv]))
            }
        }
        switch feedForward {
        case let .dense(width):
            specs.append(TensorSpec(name: n.denseMLP(l, .gate), shape: [width, h]))
            specs.append(TensorSpec(name: n.denseMLP(l, .up), shape: [width, h]))
            specs.append(TensorSpec(name: n.denseMLP(l, .down), shape: [h, width]))
        case let .moe(moe):
            specs.append(TensorSpec(name: n.router(l), shape: [moe.expertCount, h]))
            if moe.routerBias { specs.append(TensorSpec(name: n.routerBias(l), shape: [moe.expertCount])) }
            if moe.router.usesCorrectionBias {
                specs.append(TensorSpec(name: n.correctionBias(l), shape: [moe.expertCount]))
            }
            if let shared = moe.sharedExpert {
                let w = shared.intermediateSize
                specs.append(TensorSpec(name: n.sharedExpert(l, .gate)!, shape: [w, h]))
                specs.append(TensorSpec(name: n.sharedExpert(l, .up)!, shape: [w, h]))
                specs.append(TensorSpec(name: n.sharedExpert(l, .down)!, shape: [h, w]))
                if shared.gated { specs.append(TensorSpec(name: n.sharedExpertGateName(l)!, shape: [1, h])) }
            }
        }
        return specs
    }

    /// A layer's routed expert projections; `asRecords`: marked as the expert records they import into.
    private func expertTensors(_ l: Int, _ moe: MoEDescription, asRecords: Bool) -> [TensorSpec] {
        let f = moe.expertIntermediateSize
        let h = hiddenSize
        return (0..<moe.expertCount).flatMap { e in
            let weights = Projection.allCases.map { p in
                TensorSpec(name: names.expert(l, e, p), shape: p == .down ? [h, f] : [f, h], expert: asRecords ? (l, e, p) : nil)
            }
            // Biases belong to their expert: they are stored, pruned and exported with it.
            let biases = moe.expertFunction.hasBias ? Projection.allCases.map { p in
                TensorSpec(name: names.expertBias(l, e, p), shape: [p == .down ? h : f], expert: asRecords ? (l, e, p) : nil)
            } : []
            return weights + biases
        }
    }
}
