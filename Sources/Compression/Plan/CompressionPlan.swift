import MoE
import Routing

/// A slimmed expert set for a task: per MoE layer, how the router is cut down (`ExpertMap`)
/// and what each remaining computation slot is. Stored by name in the expert store, next to
/// the variants it refers to; exportable as JSON. The full model is the plan that keeps
/// every expert at its original variant.
public struct CompressionPlan: Codable, Sendable, Equatable {
    public static let formatVersion = 1

    public var formatVersion = CompressionPlan.formatVersion
    public var name: String
    /// The store fingerprint of the model the plan belongs to.
    public var modelFingerprint: String
    public var recipe: PlanRecipe
    /// Indexed like the model's layers; nil for dense layers.
    public var layers: [LayerPlan?]
    /// Bytes of expert weights a server holds to run this plan (slots only, dense part excluded).
    public var expectedExpertBytes: Int
    /// Dense weights the plan quantized (nil: all as stored).
    public var denseQuantization: DenseQuantization?
    /// Bytes the dense weights take in memory with this plan (`DenseFootprint`); nil in plans
    /// stored before it was recorded.
    public var expectedDenseBytes: Int?

    public init(name: String, modelFingerprint: String, recipe: PlanRecipe, layers: [LayerPlan?], expectedExpertBytes: Int) {
        self.name = name
        self.modelFingerprint = modelFingerprint
        self.recipe = recipe
        self.layers = layers
        self.expectedExpertBytes = expectedExpertBytes
    }

    /// Every expert kept, unmodified.
    public static func full(description: ModelDescription, fingerprint: String, expertBytes: Int) -> CompressionPlan {
        CompressionPlan(
            name: "full", modelFingerprint: fingerprint, recipe: PlanRecipe(method: "full"),
            layers: description.layers.map { layer in
                layer.moe.map { moe in
                    LayerPlan(expertMap: .identity(expertCount: moe.expertCount),
                              slots: (0..<moe.expertCount).map { .expert($0, variant: 0) })
                }
            },
            expectedExpertBytes: expertBytes)
    }

    /// The router maps for `MoEModel(expertMaps:)`.
    public var expertMaps: [Int: ExpertMap] {
        var maps = [Int: ExpertMap]()
        for (l, layer) in layers.enumerated() { if let layer { maps[l] = layer.expertMap } }
        return maps
    }

    /// Experts kept (routable) per layer, summed.
    public var routableExpertCount: Int { layers.compactMap { $0 }.reduce(0) { $0 + $1.expertMap.survivingExperts.count } }
    public var slotCount: Int { layers.compactMap { $0 }.reduce(0) { $0 + $1.slots.count } }

    /// Checks that the plan fits the model: the same MoE layers, expert indices that exist,
    /// one slot per slot index, and at least top-k routable experts per layer.
    public func validate(against description: ModelDescription, fingerprint: String?) throws {
        if let fingerprint, fingerprint != modelFingerprint {
            throw PlanError.wrongModel(plan: name, planFingerprint: modelFingerprint, storeFingerprint: fingerprint)
        }
        guard layers.count == description.layerCount else {
            throw PlanError.invalid(plan: name, reason: "it has \(layers.count) layers, the model \(description.layerCount)")
        }
        for (l, layer) in layers.enumerated() {
            let moe = description.layers[l].moe
            switch (layer, moe) {
            case (nil, nil): continue
            case (nil, _?), (_?, nil):
                throw PlanError.invalid(plan: name, reason: "layer \(l) is \(moe == nil ? "dense" : "MoE") in the model but not in the plan")
            case let (layer?, moe?):
                let map = layer.expertMap
                guard map.expertCount == moe.expertCount else {
                    throw PlanError.invalid(plan: name, reason: "layer \(l) maps \(map.expertCount) router rows, the model has \(moe.expertCount) experts")
                }
                let topK = map.routingRule?.topK ?? moe.topK
                guard map.survivingExperts.count >= topK else {
                    throw PlanError.invalid(plan: name, reason: "layer \(l) keeps \(map.survivingExperts.count) experts, fewer than top-\(topK)")
                }
                if let problem = map.routingRule?.problem(familyTopK: moe.topK, routable: map.survivingExperts.count) {
                    throw PlanError.invalid(plan: name, reason: "layer \(l): \(problem)")
                }
                guard map.noviceSlotOfExpert.map({ $0.count == moe.expertCount }) ?? true else {
                    throw PlanError.invalid(plan: name, reason: "layer \(l) maps novices for \(map.noviceSlotOfExpert!.count) experts, the model has \(moe.expertCount)")
                }
                guard map.slotCount == layer.slots.count else {
                    throw PlanError.invalid(plan: name, reason: "layer \(l) routes to \(map.slotCount) slots but defines \(layer.slots.count)")
                }
                for slot in layer.slots {
                    // A slot's record is stored under its first expert (`SlotPlan.record`).
                    guard !slot.experts.isEmpty else {
                        throw PlanError.invalid(plan: name, reason: "layer \(l) has a slot that names no expert")
                    }
                    for e in slot.experts where !(0..<moe.expertCount).contains(e) {
                        throw PlanError.invalid(plan: name, reason: "layer \(l) names expert \(e), which does not exist (the layer has \(moe.expertCount))")
                    }
                }
            }
        }
    }
}

/// How a plan was made, for people reading it later.
public struct PlanRecipe: Codable, Sendable, Equatable {
    public var method: String
    public var profiles: [String] = []
    public var criterion: String?
    public var keepFraction: Double?
    public var budget: String?
    public var noviceFraction: Double?
    public var averageBits: Double?
    public var groupSize: Int?
    public var protectedSuperExperts: [LayerExpert] = []
    /// α of the least-squares refit's ridge (nil: no refit).
    public var refitRidge: Double?
    /// How novice vectors were made: "mean" or "lsq" (nil: no novices).
    public var noviceFit: String?
    /// Experts kept in each MoE layer, as `--budget search` chose them.
    public var searchedCounts: [Int]?
    /// `--top-k` (one value, or one per MoE layer) and `--skip` as given (nil: the family's routing).
    public var topK: [Int]?
    public var skip: String?
    /// `--shrink`: the fraction of expert neurons removed, and how (`ExpertShrinking.Scope`).
    public var shrink: Double?
    public var shrinkScope: String?
    /// Widths of the experts after shrinking: the smallest and widest slot.
    public var expertWidths: [Int]?

    public init(method: String) { self.method = method }
}

public struct LayerPlan: Codable, Sendable, Equatable {
    public var expertMap: ExpertMap
    public var slots: [SlotPlan]

    public init(expertMap: ExpertMap, slots: [SlotPlan]) {
        self.expertMap = expertMap
        self.slots = slots
    }
}

/// What one computation slot runs. Variants name records in the store (0 = original weights).
public enum SlotPlan: Codable, Sendable, Equatable {
    /// One expert's own weights, at a variant (original, or quantized).
    case expert(Int, variant: UInt32)
    /// A merged expert, stored under its first member, built from `members` with `weights`.
    case merged(members: [Int], weights: [Double], variant: UInt32)
    /// A MoNE novice: the expert's mean routed output as a constant, stored under the expert.
    case novice(Int, variant: UInt32)

    /// The original experts this slot stands for.
    public var experts: [Int] {
        switch self {
        case let .expert(e, _): return [e]
        case let .merged(members, _, _): return members
        case let .novice(e, _): return [e]
        }
    }

    /// Whether the slot computes from weights (an expert or a merged group), not a novice's constant.
    public var isRouted: Bool {
        if case .novice = self { return false }
        return true
    }

    /// The store record (expert index and variant) that holds this slot's weights.
    public var record: (expert: Int, variant: UInt32) {
        switch self {
        case let .expert(e, v): return (e, v)
        case let .merged(members, _, v): return (members[0], v)
        case let .novice(e, v): return (e, v)
        }
    }
}

public enum PlanError: Error, CustomStringConvertible, Equatable {
    case invalid(plan: String, reason: String)
    case wrongModel(plan: String, planFingerprint: String, storeFingerprint: String)
    case unknownPlan(name: String, available: [String])

    public var description: String {
        switch self {
        case let .invalid(plan, reason): return "plan '\(plan)' does not fit the model: \(reason)"
        case let .wrongModel(plan, p, s): return "plan '\(plan)' was made for model \(p), but the store holds model \(s)"
        case let .unknownPlan(name, available):
            return "no plan named '\(name)' in the store; available: \(available.isEmpty ? "none" : available.joined(separator: ", "))"
        }
    }
}
