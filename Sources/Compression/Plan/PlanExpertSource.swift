import MoE
import Routing

/// Where a plan's slot records come from: the expert store, or memory in tests.
public protocol ExpertVariantProvider: Sendable {
    /// The expert record at (layer, expert, variant): original weights, a quantized or merged
    /// variant, or a novice's constant vector.
    func expert(layer: Int, expert: Int, variant: UInt32) throws -> any Expert
}

/// The experts of one plan, loaded eagerly: exactly the plan's slots, nothing else. The
/// forward pass asks it for slots (the plan's expert maps route router choices to slots).
public final class PlanExpertSource: ExpertSource, @unchecked Sendable {
    public let plan: CompressionPlan
    private let slots: [Int: [any Expert]]

    /// `layers`, when given, limits loading to those layers (a model streamed layer by layer).
    public init(plan: CompressionPlan, provider: some ExpertVariantProvider, layers only: Set<Int>? = nil) throws {
        self.plan = plan
        var slots = [Int: [any Expert]]()
        for (l, layer) in plan.layers.enumerated() {
            guard let layer, only?.contains(l) ?? true else { continue }
            slots[l] = try layer.slots.map { slot in
                let record = slot.record
                return try provider.expert(layer: l, expert: record.expert, variant: record.variant)
            }
        }
        self.slots = slots
    }

    public func expert(layer: Int, index: Int) throws -> any Expert {
        guard let layerSlots = slots[layer], layerSlots.indices.contains(index) else {
            throw ModelError.noSuchExpert(layer: layer, expert: index)
        }
        return layerSlots[index]
    }

    /// Bytes of expert weights held.
    public var residentBytes: Int { slots.values.joined().reduce(0) { $0 + $1.residentBytes } }
}
