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
        let defaults = GroupLimitedMoEDefaults(sharedExperts: 0, firstSparseLayer: 0)
        let layers = try common.leadingDenseLayers(moe: try common.groupLimitedMoE(defaults), defaults)
        return try common.description(
            family: .deepseekV3, attention: attention, rope: rope, layers: layers,
            names: TensorNames(sharedExpertModule: "shared_experts"), tiedByDefault: false)
    }
}
