import Foundation
import Routing

/// DeepSeek-V3: multi-head latent attention, a sigmoid router whose correction bias is used
/// for selection only, group-limited top-k, `routed_scaling_factor`, shared experts, and dense
/// layers below `first_k_dense_replace`.
enum DeepseekV3 {
    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        let heads = try common.headCount
        func headSize(_ value: Int?, _ key: String) throws -> Int {
            try config.integer(value, key, in: 1...ConfigLimits.headDim, file: file)
        }
        let nope = try headSize(config.qkNopeHeadDim, "qk_nope_head_dim")
        let ropeDim = try headSize(config.qkRopeHeadDim, "qk_rope_head_dim")
        let valueDim = try headSize(config.vHeadDim, "v_head_dim")
        let latent = LatentAttentionDescription(
            queryLoraRank: try config.optionalInteger(config.qLoraRank, "q_lora_rank", in: 1...ConfigLimits.width, file: file),
            keyValueLoraRank: try common.width(config.kvLoraRank, "kv_lora_rank"),
            noPositionHeadDim: nope, ropeHeadDim: ropeDim)
        let rope = try common.rope(dimensions: ropeDim, dimensionsKey: "qk_rope_head_dim", interleaved: config.ropeInterleave ?? true)
        var scale = 1 / Float(nope + ropeDim).squareRoot()
        // YaRN also sharpens the softmax by mscale(factor, mscale_all_dim)².
        if rope.kind != "default", let all = rope.mscaleAllDim, all != 0, let factor = rope.factor, factor > 1 {
            let m = Float(0.1 * all * log(factor) + 1)
            scale *= m * m
        }
        let attention = AttentionDescription(
            headCount: heads, keyValueHeadCount: heads, queryKeyHeadDim: nope + ropeDim, valueHeadDim: valueDim,
            qkvBias: config.attentionBias ?? false, outputBias: config.attentionBias ?? false,
            qkNorm: .none, clipQKV: nil, slidingWindow: nil, latent: latent, softmaxScale: scale)

        if let scoring = config.scoringFunc, scoring != "sigmoid" {
            throw CheckpointError.malformedConfig(file: file, reason: "scoring_func '\(scoring)' is not supported for deepseek_v3 (expected sigmoid)")
        }
        let experts = try common.expertCount
        let topK = try common.topK
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
        let router = RouterConfig(
            expertCount: experts, topK: topK, scoring: .sigmoid,
            normalizeTopK: config.normTopkProb ?? true, normalizationEpsilon: 1e-20,
            scalingFactor: Float(try config.real(config.routedScalingFactor, "routed_scaling_factor", .positive, file: file) ?? 1),
            groupCount: groups, topGroupCount: keptGroups, usesCorrectionBias: true)
        let expertWidth = try common.width(config.moeIntermediateSize, "moe_intermediate_size")
        let sharedCount = try config.optionalInteger(config.nSharedExperts, "n_shared_experts", in: 0...ConfigLimits.experts, file: file) ?? 0
        let moe = MoEDescription(
            router: router, expertIntermediateSize: expertWidth,
            sharedExpert: sharedCount > 0 ? SharedExpertDescription(intermediateSize: expertWidth * sharedCount, gated: false) : nil)
        let layerCount = try common.layerCount
        // first_k_dense_replace == num_hidden_layers leaves no MoE layer, which MoEKit has no use for.
        let firstSparse = try config.optionalInteger(config.firstKDenseReplace, "first_k_dense_replace",
                                                     in: 0...(layerCount - 1), file: file) ?? 0
        let dense = config.intermediateSize
        let layers: [FeedForwardDescription] = try (0..<layerCount).map { l in
            l >= firstSparse ? .moe(moe) : .dense(intermediateSize: try common.width(dense, "intermediate_size"))
        }
        return try common.description(
            family: .deepseekV3, attention: attention, rope: rope, layers: layers,
            names: TensorNames(sharedExpertModule: "shared_experts"), tiedByDefault: false)
    }
}
