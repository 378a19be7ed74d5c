import Routing

/// The mixture-of-experts layout DeepSeek-V3 introduced and GLM-4.5 reuses: a sigmoid
/// router whose `e_score_correction_bias` is added for selection only, group-limited top-k
/// (`n_group`, `topk_group`), renormalisation (`norm_topk_prob`) and `routed_scaling_factor`,
/// `n_shared_experts` always-on experts, and dense layers below `first_k_dense_replace`.
/// The families differ only in their defaults for absent keys (transformers' config defaults).
struct GroupLimitedMoEDefaults {
    var sharedExperts: Int
    var firstSparseLayer: Int
}

extension CommonConfig {
    /// The sigmoid router, with every key range-checked against the expert count.
    func groupLimitedSigmoidRouter() throws -> RouterConfig {
        let experts = try expertCount
        let topK = try topK
        // Experts split evenly into n_group groups; the router keeps the best topk_group of
        // them and must still find top-k experts inside those.
        let groups = config.nGroup ?? 1
        guard groups >= 1, groups <= experts, experts % groups == 0 else {
            let divisors = (1...experts).filter { experts % $0 == 0 }.map(String.init).joined(separator: ", ")
            throw config.outOfRange("n_group", groups, "a divisor of \(config.expertCountKey) \(experts): \(divisors)", file: file)
        }
        let keptGroups = try config.optionalInteger(config.topkGroup, "topk_group", in: 1...groups, file: file) ?? 1
        let reachable = keptGroups * (experts / groups)
        guard topK <= reachable else {
            throw config.outOfRange("num_experts_per_tok", topK, "1...\(reachable) (topk_group \(keptGroups) of n_group \(groups) groups of \(experts / groups) experts)", file: file)
        }
        return RouterConfig(
            expertCount: experts, topK: topK, scoring: .sigmoid,
            normalizeTopK: config.normTopkProb ?? true, normalizationEpsilon: 1e-20,
            scalingFactor: Float(try config.real(config.routedScalingFactor, "routed_scaling_factor", .positive, file: file) ?? 1),
            groupCount: groups, topGroupCount: keptGroups, usesCorrectionBias: true)
    }

    /// The MoE block: the router above, experts of `moe_intermediate_size`, and
    /// `n_shared_experts` shared experts fused into one MLP of that many times the width.
    func groupLimitedMoE(_ defaults: GroupLimitedMoEDefaults) throws -> MoEDescription {
        let expertWidth = try width(config.moeIntermediateSize, "moe_intermediate_size")
        let sharedCount = try config.optionalInteger(config.nSharedExperts, "n_shared_experts", in: 0...ConfigLimits.experts, file: file)
            ?? defaults.sharedExperts
        return MoEDescription(
            router: try groupLimitedSigmoidRouter(), expertIntermediateSize: expertWidth,
            sharedExpert: sharedCount > 0 ? SharedExpertDescription(intermediateSize: expertWidth * sharedCount, gated: false) : nil)
    }

    /// Dense layers (`intermediate_size`) below `first_k_dense_replace`, `moe` from there on.
    func leadingDenseLayers(moe: MoEDescription, _ defaults: GroupLimitedMoEDefaults) throws -> [FeedForwardDescription] {
        let layers = try layerCount
        // first_k_dense_replace == num_hidden_layers leaves no MoE layer, which MoEKit has no use for.
        let firstSparse = try config.optionalInteger(config.firstKDenseReplace, "first_k_dense_replace",
                                                     in: 0...(layers - 1), file: file) ?? min(defaults.firstSparseLayer, layers - 1)
        return try (0..<layers).map { l in
            l >= firstSparse ? .moe(moe) : .dense(intermediateSize: try width(config.intermediateSize, "intermediate_size"))
        }
    }

    /// The multi-token-prediction layers after the decoder layers (`num_nextn_predict_layers`):
    /// full decoder layers whose feed-forward is the MoE block (they sit above
    /// `first_k_dense_replace`).
    func predictionLayers(moe: MoEDescription) throws -> [FeedForwardDescription] {
        let count = try config.optionalInteger(config.numNextnPredictLayers, "num_nextn_predict_layers", in: 0...ConfigLimits.layers, file: file) ?? 0
        return Array(repeating: .moe(moe), count: count)
    }
}
