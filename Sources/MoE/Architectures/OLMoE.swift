/// OLMoE: softmax router (renormalised with `norm_topk_prob`), RMSNorm over the whole
/// q and k projections, optional clamping of q, k and v to ±clip_qkv after the norm.
enum OLMoE {
    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        let moe = MoEDescription(
            router: try common.softmaxRouter(normalize: config.normTopkProb ?? false),
            expertIntermediateSize: try common.width(config.intermediateSize, "intermediate_size"),
            sharedExpert: nil)
        return try common.description(
            family: .olmoe,
            attention: try common.groupedAttention(qkvBias: config.attentionBias ?? false, qkNorm: .wholeProjection,
                                                   clipQKV: try config.real(config.clipQkv, "clip_qkv", .positive, file: file).map(Float.init)),
            rope: try common.rope(dimensions: try common.headDim),
            layers: Array(repeating: .moe(moe), count: try common.layerCount),
            names: TensorNames(),
            tiedByDefault: false)
    }
}
