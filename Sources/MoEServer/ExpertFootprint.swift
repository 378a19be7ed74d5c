import Compression
import ExpertStore
import Foundation
import MoE

/// What running plans from a store will hold in memory, estimated before anything is loaded:
/// from the dense records' headers, one original expert record per MoE layer, and the plan
/// documents. It decides whether the experts are loaded at start or come through the cache
/// (`ExpertResidency`), so it must be cheap for a model far larger than memory.
public struct ExpertFootprint: Sendable, Equatable {
    /// The dense weights (embeddings, attention, norms, routers, shared experts) as the plans'
    /// models hold them (`DenseFootprint`: as stored, or quantized by the plan), each plan's
    /// model its own.
    public var denseBytes: Int
    /// The experts of every plan, at the precision they will be held in, each plan counted
    /// on its own (plans loaded at start do not share experts).
    public var expertBytes: Int
    /// One MoE layer's top-k experts: the least a cache should hold so that a token's forward
    /// pass does not evict experts it needs again in the next token's. (A smaller cache still
    /// computes correctly; it only reads more from the store.)
    public var minimumCacheBytes: Int
    public var planCount: Int

    public init(denseBytes: Int, expertBytes: Int, minimumCacheBytes: Int, planCount: Int) {
        self.denseBytes = denseBytes
        self.expertBytes = expertBytes
        self.minimumCacheBytes = minimumCacheBytes
        self.planCount = planCount
    }

    /// The footprint of `plans` from `store` with original experts held at `precision`.
    public init(store: ExpertStore, plans: [CompressionPlan], precision: ExpertPrecision) throws {
        let description = try store.modelDescription()
        denseBytes = try plans.reduce(0) { $0 + (try DenseFootprint.bytes(store: store, quantization: $1.denseQuantization, precision: precision)) }
        let originals = try OriginalExpertSize.perLayer(store: store, precision: precision)

        var total = 0
        var largestSlot = [Int: Int]()   // layer → largest estimated slot bytes of any plan
        for plan in plans {
            var originalSlots = [Int: Int]()
            var storedOriginalBytes = 0
            for (l, layer) in plan.layers.enumerated() {
                guard let layer else { continue }
                let count = layer.slots.filter { $0.record.variant == 0 }.count
                originalSlots[l] = count
                storedOriginalBytes += count * (originals[l]?.storedBytes ?? 0)
            }
            // `expectedExpertBytes` counts every slot at its stored size. Derived variants
            // (quantized, merged, novice) are held as stored; originals at `precision`.
            let derivedBytes = max(0, plan.expectedExpertBytes - storedOriginalBytes)
            let derivedSlots = plan.slotCount - originalSlots.values.reduce(0, +)
            let meanDerived = derivedSlots > 0 ? derivedBytes / derivedSlots : 0
            total += derivedBytes + originalSlots.reduce(0) { $0 + $1.value * (originals[$1.key]?.residentBytes ?? 0) }
            for (l, layer) in plan.layers.enumerated() {
                guard let layer else { continue }
                let original = (originalSlots[l] ?? 0) > 0 ? originals[l]?.residentBytes ?? 0 : 0
                let derived = layer.slots.count > (originalSlots[l] ?? 0) ? meanDerived : 0
                largestSlot[l] = max(largestSlot[l] ?? 0, original, derived)
            }
        }
        expertBytes = total
        minimumCacheBytes = largestSlot.map { (description.layers[$0.key].moe?.topK ?? 0) * $0.value }.max() ?? 0
        planCount = plans.count
    }
}

/// The size of one original expert of a layer (every expert of a layer has the same shapes),
/// as stored and as held at a precision.
struct OriginalExpertSize: Equatable {
    var storedBytes: Int
    var residentBytes: Int

    /// Reads expert 0 of every MoE layer: one record per layer, not the whole store.
    static func perLayer(store: ExpertStore, precision: ExpertPrecision) throws -> [Int: OriginalExpertSize] {
        let description = try store.modelDescription()
        var sizes = [Int: OriginalExpertSize]()
        for l in description.moeLayerIndices {
            guard let record = try store.expertRecord(ExpertKey(layer: l, expert: 0)) else {
                throw StoreError.missingRecord(path: store.path, record: "expert record (\(ExpertKey(layer: l, expert: 0)))")
            }
            let elements = record.tensors.reduce(0) { $0 + $1.elementCount }
            // What `StoreExpertLoader` makes of it: 16-bit weights stay 16-bit with `.stored`,
            // everything else is f32 in memory.
            let keptHalf = precision == .stored && HalfMatrix.Format(sharedBy: record.tensors.map(\.dtype)) != nil
            sizes[l] = OriginalExpertSize(storedBytes: record.byteCount, residentBytes: elements * (keptHalf ? 2 : 4))
        }
        return sizes
    }
}
