import ExpertStore
import MoE

/// Bytes the dense weights of a plan take in memory, from the store's tensor layouts alone
/// (nothing is loaded): what `MoEModel.denseByteCount` reports once the plan is loaded. 2-D
/// BF16/F16 weights stay 16-bit at `.stored` (routers and 1-D tensors are held in f32), a
/// plan's quantized tensors take their packed size, and a tied head counts once.
public enum DenseFootprint {
    public static func bytes(store: ExpertStore, quantization: DenseQuantization?, precision: WeightPrecision = .stored) throws -> Int {
        let tensors = try StoreTensorProvider(store: store)
        let description = try store.modelDescription()
        let names = description.names
        // Routers and the shared-expert gate are held in f32 whatever their stored dtype.
        let routers = Set(description.moeLayerIndices.flatMap { [names.router($0), names.sharedExpertGateName($0)].compactMap { $0 } })
        let quantized = Set(quantization?.tensors ?? [])
        var total = 0
        for spec in description.tensorInventory where spec.expert == nil && tensors.contains(spec.name) {
            let layout = try tensors.layout(spec.name)
            let elements = layout.shape.reduce(1, *)
            if quantized.contains(spec.name), let q = quantization {
                let groups = elements / q.groupSize
                total += BitPacking.wordCount(codes: elements, bits: q.bits) * 4 + groups * 4
            } else if precision == .stored, layout.shape.count == 2, !routers.contains(spec.name), [.bf16, .f16].contains(layout.dtype) {
                total += elements * 2
            } else {
                total += elements * 4
            }
        }
        return total
    }
}
