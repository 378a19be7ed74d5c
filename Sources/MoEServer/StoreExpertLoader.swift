import CKernels
import Compression
import ExpertStore
import Foundation
import MoE

/// Builds one expert from its store record each time it is asked, keeping nothing itself:
/// the `ExpertCache` decides what stays in memory. (`StoreExpertSource.expert` keeps every
/// expert it ever loaded, right for a fixed plan and wrong for a cache that must evict, so
/// originals come from its `uncachedExpert`.)
/// Original weights are kept in their 16-bit format or widened to f32 as `precision` says,
/// with the same kernels the store loader uses, so an expert loaded here computes exactly
/// what the same expert loaded by `PlanLoader` with the same precision does.
public struct StoreExpertLoader: @unchecked Sendable {
    public let store: ExpertStore
    private let variants: StoreVariantProvider
    private let originals: StoreExpertSource
    public let precision: ExpertPrecision

    public init(store: ExpertStore, precision: ExpertPrecision = .stored) throws {
        self.store = store
        self.precision = precision
        variants = try StoreVariantProvider(store: store, precision: precision)
        originals = try StoreExpertSource(store: store, precision: precision)
    }

    public func expert(layer: Int, expert: Int, variant: UInt32) throws -> any Expert {
        // Derived variants (quantized, merged, novice) are built from a copy of their record
        // and hold nothing of the provider; only the original weights need widening here.
        guard variant == 0 else { return try variants.expert(layer: layer, expert: expert, variant: variant) }
        // Straight from the map: checksum verified once, one copy (or none for aligned f32), pages released.
        return try originals.uncachedExpert(layer: layer, index: expert)
    }
}

/// One plan's slots, fetched through a shared `ExpertCache`: the expert source of a plan
/// served with `--auto`, or of any plan whose experts do not all fit in memory (or are
/// bounded by `--max-expert-memory`). Nothing is loaded until a token is routed to it.
public final class CachedPlanExpertSource: ExpertSource, @unchecked Sendable {
    public let plan: CompressionPlan
    private let cache: ExpertCache
    private let loader: StoreExpertLoader

    public init(plan: CompressionPlan, cache: ExpertCache, loader: StoreExpertLoader) {
        self.plan = plan
        self.cache = cache
        self.loader = loader
    }

    public func expert(layer: Int, index: Int) throws -> any Expert {
        guard plan.layers.indices.contains(layer), let slots = plan.layers[layer]?.slots, slots.indices.contains(index) else {
            throw ModelError.noSuchExpert(layer: layer, expert: index)
        }
        let record = slots[index].record
        return try cache.expert(ExpertCache.Key(layer: layer, expert: record.expert, variant: record.variant)) {
            try loader.expert(layer: layer, expert: record.expert, variant: record.variant)
        }
    }
}

extension CachedPlanExpertSource {
    /// `plan` as a runnable model whose experts come through `cache`: the store's dense
    /// weights, the plan's router maps, and its slots loaded by `loader` on first use.
    public static func model(plan: CompressionPlan, store: ExpertStore, cache: ExpertCache, loader: StoreExpertLoader) throws -> MoEModel {
        try MoEModel(description: store.modelDescription(), tensors: PlanTensorProvider(store: store, quantization: plan.denseQuantization),
                     experts: CachedPlanExpertSource(plan: plan, cache: cache, loader: loader), expertMaps: plan.expertMaps,
                     precision: loader.precision)
    }
}
