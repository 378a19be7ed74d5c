/// Mixtral: softmax router, top-k always renormalised, experts named w1 (gate), w3 (up), w2 (down)
/// under `block_sparse_moe`, optional sliding-window attention.
enum Mixtral {
    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        let moe = MoEDescription(
            router: try common.softmaxRouter(normalize: true),
            expertIntermediateSize: try common.width(config.intermediateSize, "intermediate_size"),
            sharedExpert: nil)
        return try common.description(
            family: .mixtral,
            attention: try common.groupedAttention(qkvBias: false, qkNorm: .none, slidingWindow: config.slidingWindow),
            rope: try common.rope(dimensions: try common.headDim, defaultTheta: 1e6),
            layers: Array(repeating: .moe(moe), count: try common.layerCount),
            names: TensorNames(moeModule: "block_sparse_moe", expertGate: "w1", expertUp: "w3", expertDown: "w2"),
            tiedByDefault: false)
    }
}
