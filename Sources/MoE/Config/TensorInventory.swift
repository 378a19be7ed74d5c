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
        let a = attention
        var specs = [TensorSpec(name: n.embedding, shape: [vocabularySize, h])]
        for l in 0..<layerCount {
            specs.append(TensorSpec(name: n.inputNorm(l), shape: [h]))
            specs.append(TensorSpec(name: n.postAttentionNorm(l), shape: [h]))
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
            switch layers[l] {
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
        }
        specs.append(TensorSpec(name: n.finalNorm, shape: [h]))
        if !tieWordEmbeddings { specs.append(TensorSpec(name: n.outputHead, shape: [vocabularySize, h])) }
        for l in moeLayerIndices {
            let moe = layers[l].moe!
            let f = moe.expertIntermediateSize
            for e in 0..<moe.expertCount {
                for p in Projection.allCases {
                    specs.append(TensorSpec(name: n.expert(l, e, p), shape: p == .down ? [h, f] : [f, h], expert: (l, e, p)))
                }
                // Biases belong to their expert: they are stored, pruned and exported with it.
                if moe.expertFunction.hasBias {
                    for p in Projection.allCases {
                        specs.append(TensorSpec(name: n.expertBias(l, e, p), shape: [p == .down ? h : f], expert: (l, e, p)))
                    }
                }
            }
        }
        return specs
    }
}
