import Foundation
import Routing

/// DeepSeek-V3: multi-head latent attention, a sigmoid router whose correction bias is used
/// for selection only, group-limited top-k, `routed_scaling_factor`, shared experts, and dense
/// layers below `first_k_dense_replace`.
enum DeepseekV3 {
    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        let heads = try common.headCount
        let nope = try config.require(config.qkNopeHeadDim, "qk_nope_head_dim", file: file)
        let ropeDim = try config.require(config.qkRopeHeadDim, "qk_rope_head_dim", file: file)
        let valueDim = try config.require(config.vHeadDim, "v_head_dim", file: file)
        let latent = LatentAttentionDescription(
            queryLoraRank: config.qLoraRank,
            keyValueLoraRank: try config.require(config.kvLoraRank, "kv_lora_rank", file: file),
            noPositionHeadDim: nope, ropeHeadDim: ropeDim)
        let rope = try common.rope(dimensions: ropeDim, interleaved: config.ropeInterleave ?? true)
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
        let router = RouterConfig(
            expertCount: experts, topK: try common.topK, scoring: .sigmoid,
            normalizeTopK: config.normTopkProb ?? true, normalizationEpsilon: 1e-20,
            scalingFactor: Float(config.routedScalingFactor ?? 1),
            groupCount: config.nGroup ?? 1, topGroupCount: config.topkGroup ?? 1, usesCorrectionBias: true)
        guard experts % router.groupCount == 0, router.topGroupCount <= router.groupCount else {
            throw CheckpointError.malformedConfig(file: file, reason: "n_group \(router.groupCount) / topk_group \(router.topGroupCount) do not fit \(experts) experts")
        }
        let expertWidth = try config.require(config.moeIntermediateSize, "moe_intermediate_size", file: file)
        let sharedCount = config.nSharedExperts ?? 0
        let moe = MoEDescription(
            router: router, expertIntermediateSize: expertWidth,
            sharedExpert: sharedCount > 0 ? SharedExpertDescription(intermediateSize: expertWidth * sharedCount, gated: false) : nil)
        let firstSparse = config.firstKDenseReplace ?? 0
        let dense = config.intermediateSize
        let layers: [FeedForwardDescription] = try (0..<common.layerCount).map { l in
            l >= firstSparse ? .moe(moe) : .dense(intermediateSize: try config.require(dense, "intermediate_size", file: file))
        }
        return try common.description(
            family: .deepseekV3, attention: attention, rope: rope, layers: layers,
            names: TensorNames(sharedExpertModule: "shared_experts"), tiedByDefault: false)
    }
}
