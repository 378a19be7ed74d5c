import MoE

/// What the model in a store occupies, from its records' sizes alone (nothing is loaded):
/// how a command decides whether to hold the whole model or stream it layer by layer.
public struct ModelFootprint: Sendable, Equatable {
    /// Dense tensors as stored (embedding, attention, norms, routers, shared experts, head).
    public var denseBytes: Int
    /// Every original expert.
    public var expertBytes: Int
}

extension ExpertStore {
    public func footprint() throws -> ModelFootprint {
        var dense = 0, experts = 0
        try environment.read { txn in
            try txn.forEach(self.dense) { key, value in
                if !ExpertStore.isDenseVariantKey(String(decoding: key, as: UTF8.self)) { dense += value.count }
                return true
            }
            try txn.forEach(self.experts) { key, value in
                if let k = ExpertKey(bytes: key), k.variant == .original { experts += value.count }
                return true
            }
        }
        return ModelFootprint(denseBytes: dense, expertBytes: experts)
    }
}
