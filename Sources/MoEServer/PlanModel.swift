import Compression
import ExpertStore
import Foundation
import MoE

/// One plan as a runnable model, its experts loaded at start or through an `ExpertCache`
/// as `ExpertResidency` decides: what `moekit generate --store` runs.
public struct PlanModel: Sendable {
    public var model: MoEModel
    /// The experts' cache; nil when they were loaded as before (at start, or for the full
    /// model on first use, each kept once loaded).
    public var cache: ExpertCache?
    public var residency: ExpertResidency

    /// `maxExpertMemory` forces the cache with that bound; without it the cache is used only
    /// when the plan does not fit `budget`.
    /// `loadEverything` loads the full model's experts at start too (a benchmark measures
    /// steady state, not first-touch loading).
    public init(plan: CompressionPlan, store: ExpertStore, precision: ExpertPrecision,
                maxExpertMemory: Int?, budget: AvailableMemory.Budget, loadEverything: Bool = false) throws {
        let footprint = try ExpertFootprint(store: store, plans: [plan], precision: precision)
        residency = ExpertResidency.decide(footprint: footprint, requestedLimit: maxExpertMemory, budget: budget)
        switch residency.mode {
        case let .cached(limit):
            let cache = ExpertCache(limitBytes: limit)
            model = try CachedPlanExpertSource.model(plan: plan, store: store, cache: cache,
                                                     loader: StoreExpertLoader(store: store, precision: precision))
            self.cache = cache
        case .resident where plan.keepsEveryExpert && plan.denseQuantization == nil:
            // The full model's experts are all needed sooner or later but read on first use,
            // so a short generation does not wait for every one of them.
            let experts = try StoreExpertSource(store: store, precision: precision)
            if loadEverything { try experts.load(experts.allExpertIDs) }
            model = try store.loadModel(experts: experts, precision: precision)
            cache = nil
        case .resident:
            model = try PlanLoader.model(plan: plan, store: store, precision: precision).model
            cache = nil
        }
    }
}
