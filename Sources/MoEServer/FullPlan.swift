import Compression
import ExpertStore
import MoE

extension CompressionPlan {
    /// The plan of the unmodified model in `store` (every expert at its original variant),
    /// so the full model can run through the expert cache like any stored plan. Its expected
    /// bytes are the original expert records' (every expert of a layer has the same shapes).
    public static func full(in store: ExpertStore) throws -> CompressionPlan {
        let description = try store.modelDescription()
        let sizes = try OriginalExpertSize.perLayer(store: store, precision: .stored)
        let bytes = description.moeLayerIndices.reduce(0) { $0 + description.layers[$1].moe!.expertCount * (sizes[$1]?.storedBytes ?? 0) }
        return .full(description: description, fingerprint: try store.fingerprint() ?? "", expertBytes: bytes)
    }

    /// The stored plan `name`, or the full model for nil or "full" (as every model command reads `--plan`).
    public static func named(_ name: String?, in store: ExpertStore) throws -> CompressionPlan {
        guard let name, name != "full" else { return try full(in: store) }
        return try PlanLoader.plan(named: name, in: store)
    }

    /// Whether the plan is the unmodified model: every router row in its own slot, each slot
    /// its own expert's original weights.
    public var keepsEveryExpert: Bool {
        layers.allSatisfy { layer in
            guard let layer else { return true }
            return layer.expertMap.isIdentity && layer.slots.enumerated().allSatisfy { $0.element == .expert($0.offset, variant: 0) }
        }
    }
}
