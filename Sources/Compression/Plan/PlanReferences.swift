import ExpertStore

extension CompressionPlan {
    /// The derived store records this plan reads: each slot's record (`SlotPlan.record`)
    /// when it is not the imported weights, and its quantized dense tensors. These are
    /// exactly what `PlanExpertSource` and `PlanTensorProvider` load, so a record outside
    /// every plan's references is never read.
    public var storeReferences: StoreReferences {
        var experts = Set<ExpertKey>()
        for (l, layer) in layers.enumerated() {
            guard let layer else { continue }
            for slot in layer.slots {
                let record = slot.record
                experts.insert(ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant)))
            }
        }
        let dense = denseQuantization.map { q in Set(q.tensors.map { ExpertStore.denseVariantKey($0, variant: q.variant) }) } ?? []
        return StoreReferences(experts: experts, denseVariants: dense)
    }
}
