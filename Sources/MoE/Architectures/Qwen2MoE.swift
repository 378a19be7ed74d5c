/// Qwen1.5/Qwen2-MoE: softmax router (renormalised only with `norm_topk_prob`), q/k/v bias,
/// and a shared expert gated by sigmoid(shared_expert_gate · x).
enum Qwen2MoE {
    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        try common.rejectSlidingWindow()
        // 0 (or absent) means no shared expert.
        let sharedWidth = try config.optionalInteger(config.sharedExpertIntermediateSize, "shared_expert_intermediate_size",
                                                     in: 0...ConfigLimits.width, file: file) ?? 0
        let shared = sharedWidth > 0 ? SharedExpertDescription(intermediateSize: sharedWidth, gated: true) : nil
        let moe = MoEDescription(
            router: try common.softmaxRouter(normalize: config.normTopkProb ?? false),
            expertIntermediateSize: try common.width(config.moeIntermediateSize, "moe_intermediate_size"),
            sharedExpert: shared)
        return try common.description(
            family: .qwen2Moe,
            attention: try common.groupedAttention(qkvBias: config.qkvBias ?? true, qkNorm: .none),
            rope: try common.rope(dimensions: try common.headDim),
            layers: try common.qwenLayers(moe: moe),
            names: TensorNames(sharedExpertModule: "shared_expert", sharedExpertGate: "shared_expert_gate"),
            tiedByDefault: false)
    }
}
