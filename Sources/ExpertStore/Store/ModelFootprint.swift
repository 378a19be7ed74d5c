import MoE

/// What the model in a store occupies, from its records' sizes alone (nothing is loaded):
/// how a command decides whether to hold the whole model or stream it layer by layer.
public struct ModelFootprint: Sendable, Equatable {
    /// Dense tensors as stored (embedding, attention, norms, routers, shared experts, head).
    public var denseBytes: Int
    /// Every original expert.
    public var expertBytes: Int
    /// Original experts of the largest MoE layer: what a streamed pass holds at once.
    public var largestLayerExpertBytes: Int

    public var totalBytes: Int { denseBytes + expertBytes }
}

extension ExpertStore {
    public func footprint() throws -> ModelFootprint {
        var dense = 0, experts = 0
        var perLayer = [Int: Int]()
        try environment.read { txn in
            try txn.forEach(self.dense) { key, value in
                if !ExpertStore.isDenseVariantKey(String(decoding: key, as: UTF8.self)) { dense += value.count }
                return true
            }
            try txn.forEach(self.experts) { key, value in
                if let k = ExpertKey(bytes: key), k.variant == .original {
                    experts += value.count
                    perLayer[k.layer, default: 0] += value.count
                }
                return true
            }
        }
        return ModelFootprint(denseBytes: dense, expertBytes: experts, largestLayerExpertBytes: perLayer.values.max() ?? 0)
    }
}
