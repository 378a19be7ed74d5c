/// What a compression plan does to one layer's router: which original experts the router
/// may still choose, and which computation slot each chosen expert is sent to.
///
/// - A pruned expert (`slotOfExpert[j] == nil`) is removed from the router: its row no longer
///   competes, top-k is taken over the survivors and renormalised as the family does.
/// - Experts that share a slot (merging) keep their router rows; when several of them are
///   chosen for one token, the slot runs once with the sum of their gates.
/// - What a slot computes (an original, quantized or merged expert, or a novice's constant
///   output) is up to the `ExpertSource`; the map only routes.
public struct ExpertMap: Codable, Sendable, Equatable {
    public var slotOfExpert: [Int?]
    public var slotCount: Int

    public init(slotOfExpert: [Int?]) {
        self.slotOfExpert = slotOfExpert
        slotCount = (slotOfExpert.compactMap { $0 }.max() ?? -1) + 1
    }

    /// Every expert in its own slot: the unmodified model.
    public static func identity(expertCount: Int) -> ExpertMap {
        ExpertMap(slotOfExpert: (0..<expertCount).map { $0 })
    }

    public var expertCount: Int { slotOfExpert.count }
    public var isIdentity: Bool { slotOfExpert.enumerated().allSatisfy { $0.element == $0.offset } }
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
}
