/// What a compression plan does to one layer's router: which original experts the router
/// may still choose, and which computation slot each chosen expert is sent to.
///
/// - A pruned expert (`slotOfExpert[j] == nil`) is removed from the router: its row no longer
///   competes, top-k is taken over the survivors and renormalised as the family does.
/// - Experts that share a slot (merging) keep their router rows; when several of them are
///   chosen for one token, the slot runs once with the sum of their gates.
/// - A pruned expert may leave an *additive novice* (`noviceSlotOfExpert[j]`): it takes no
///   routing slot, but whenever the unpruned router would have chosen it, the block adds its
///   slot's output (a constant) times the gate the unpruned router gives it. Top-k among the
///   survivors is unchanged, so a novice never displaces a real expert.
/// - A routing rule (`RoutingRule`) may change the layer's top-k or skip low-weight experts
///   token by token; it applies after pruning, over the experts that remain.
/// - What a slot computes (an original, quantized or merged expert, or a novice's constant
///   output) is up to the `ExpertSource`; the map only routes.
public struct ExpertMap: Codable, Sendable, Equatable {
    public var slotOfExpert: [Int?]
    /// Additive novices by expert (nil when the plan has none; absent in plans stored before them).
    public var noviceSlotOfExpert: [Int?]?
    /// How many experts each token runs (nil: the family's top-k, all of them; absent in
    /// plans stored before rules).
    public var routingRule: RoutingRule?
    public var slotCount: Int

    public init(slotOfExpert: [Int?], noviceSlotOfExpert: [Int?]? = nil, routingRule: RoutingRule? = nil) {
        precondition(noviceSlotOfExpert.map { $0.count == slotOfExpert.count } ?? true, "one novice entry per expert")
        self.slotOfExpert = slotOfExpert
        self.noviceSlotOfExpert = noviceSlotOfExpert
        self.routingRule = routingRule
        slotCount = ((slotOfExpert + (noviceSlotOfExpert ?? [])).compactMap { $0 }.max() ?? -1) + 1
    }

    /// Every expert in its own slot: the unmodified model.
    public static func identity(expertCount: Int) -> ExpertMap {
        ExpertMap(slotOfExpert: (0..<expertCount).map { $0 })
    }

    public var expertCount: Int { slotOfExpert.count }
    /// Every expert in its own slot, routed as the family routes: the unmodified layer.
    public var isIdentity: Bool { slotOfExpert.enumerated().allSatisfy { $0.element == $0.offset } && !hasNovices && routingRule == nil }
    public var hasNovices: Bool { noviceSlotOfExpert?.contains { $0 != nil } ?? false }
    public var survivingExperts: [Int] { slotOfExpert.indices.filter { slotOfExpert[$0] != nil } }

    /// Router availability: false for pruned experts.
    public var available: [Bool] { slotOfExpert.map { $0 != nil } }

    /// Groups a token's decision by slot, summing the gates of experts that share one.
    public func slots(for decision: RoutingDecision) -> [(slot: Int, gate: Float)] {
        var result = [(slot: Int, gate: Float)]()
        for (expert, gate) in zip(decision.experts, decision.gates) {
            guard let slot = slotOfExpert[expert] else { continue }
            if let i = result.firstIndex(where: { $0.slot == slot }) { result[i].gate += gate } else { result.append((slot, gate)) }
        }
        return result
    }

    /// The novice slots the unpruned router's decision reaches, with the gates it gives them.
    public func noviceSlots(for fullDecision: RoutingDecision) -> [(slot: Int, gate: Float)] {
        guard let novices = noviceSlotOfExpert else { return [] }
        return zip(fullDecision.experts, fullDecision.gates).compactMap { e, g in novices[e].map { ($0, g) } }
    }
}
