/// Qwen3-MoE: softmax router (renormalised with `norm_topk_prob`), RMSNorm on each
/// query and key head before RoPE, no shared expert.
enum Qwen3MoE {
    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        try common.rejectSlidingWindow()
        let moe = MoEDescription(
            router: try common.softmaxRouter(normalize: config.normTopkProb ?? false),
            expertIntermediateSize: try common.width(config.moeIntermediateSize, "moe_intermediate_size"),
            sharedExpert: nil)
        return try common.description(
            family: .qwen3Moe,
            attention: try common.groupedAttention(qkvBias: config.attentionBias ?? false, qkNorm: .perHead),
            rope: try common.rope(dimensions: try common.headDim),
            layers: try common.qwenLayers(moe: moe),
            names: TensorNames(),
            tiedByDefault: false)
    }
}
