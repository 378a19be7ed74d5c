/// GLM-4.5 / 4.6 (`glm4_moe`): DeepSeek-V3's MoE layout (sigmoid router with correction
/// bias, group-limited top-k, routed scaling, shared experts, leading dense layers) on
/// grouped-query attention with q/k/v biases (`attention_bias`, never on o_proj), optional
/// per-head q/k RMSNorm (`use_qk_norm`) and RoPE on the first `partial_rotary_factor` of
/// each head in the halves layout (transformers' `rotate_half`). The
/// `num_nextn_predict_layers` multi-token-prediction layers are described but not run.
enum Glm4Moe {
    /// transformers' `Glm4MoeConfig` defaults for keys a file may omit.
    static let defaults = GroupLimitedMoEDefaults(sharedExperts: 1, firstSparseLayer: 1)
    static let defaultRotaryFraction = 0.5

    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        let attention = try common.groupedAttention(qkvBias: config.attentionBias ?? false,
                                                    qkNorm: config.useQkNorm == true ? .perHead : .none)
        let rope = try common.rope(dimensions: try common.headDim, defaultRotaryFraction: defaultRotaryFraction)
        let moe = try common.groupLimitedMoE(defaults)
        return try common.description(
            family: .glm4Moe, attention: attention, rope: rope,
            layers: try common.leadingDenseLayers(moe: moe, defaults),
            names: TensorNames(sharedExpertModule: "shared_experts"), tiedByDefault: false,
            predictionLayers: try common.predictionLayers(moe: moe))
    }
}
