import ExpertStore
import MoE
import Routing

/// A model to score layer by layer (`Evaluator.evaluateStreaming`): its plan's routing maps
/// and, per layer, a source holding (at most) that layer's experts, released after the layer.
public struct StreamedCandidate {
    public var plan: String
    public var expertMaps: [Int: ExpertMap]
    public var expertBytes: Int
    public var denseBytes = 0
    public var expertsForLayer: (Int) throws -> any ExpertSource
    /// The dense weights when they are not the store's own (a plan that quantized some).
    public var tensors: (any TensorProvider)?

    public init(plan: String, expertMaps: [Int: ExpertMap], expertBytes: Int, expertsForLayer: @escaping (Int) throws -> any ExpertSource) {
        self.plan = plan
        self.expertMaps = expertMaps
        self.expertBytes = expertBytes
        self.expertsForLayer = expertsForLayer
    }
}

extension StreamedCandidate {
    /// The unmodified model from `store`: each layer's original experts, loaded when the layer runs.
    public static func full(store: ExpertStore, precision: WeightPrecision = .stored, expertBytes: Int = 0) throws -> StreamedCandidate {
        var candidate = StreamedCandidate(plan: "full", expertMaps: [:], expertBytes: expertBytes) { l in
            try StoreExpertSource.layer(l, of: store, precision: precision)
        }
        candidate.denseBytes = try DenseFootprint.bytes(store: store, quantization: nil, precision: precision)
        return candidate
    }

    /// A stored plan: its routing maps, and each layer's slots loaded when the layer runs.
    public static func plan(_ plan: CompressionPlan, store: ExpertStore, precision: WeightPrecision = .stored) throws -> StreamedCandidate {
        var candidate = StreamedCandidate(plan: plan.name, expertMaps: plan.expertMaps, expertBytes: plan.expectedExpertBytes) { l in
            // A provider per layer: it caches what it loads, and is released with the layer.
            try PlanExpertSource(plan: plan, provider: StoreVariantProvider(store: store, precision: precision, inPlace: true), layers: [l])
        }
        if plan.denseQuantization != nil { candidate.tensors = try PlanTensorProvider(store: store, quantization: plan.denseQuantization) }
        candidate.denseBytes = try DenseFootprint.bytes(store: store, quantization: plan.denseQuantization, precision: precision)
        return candidate
    }
}
