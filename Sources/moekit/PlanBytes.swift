import Compression
import ExpertStore
import Foundation
import MoE

/// A plan's memory, one number for experts and one for dense weights, as `slim`, `inspect`,
/// `eval` and the server report it: the plan's recorded expert bytes, and the dense weights'
/// bytes in memory at the given precision (quantized tensors at their packed size).
struct PlanBytes: Encodable {
    var name: String
    var expertBytes: Int
    var denseBytes: Int
    var denseQuantization: String?

    init(plan: CompressionPlan, store: ExpertStore, precision: WeightPrecision) throws {
        name = plan.name
        expertBytes = plan.expectedExpertBytes
        denseBytes = try DenseFootprint.bytes(store: store, quantization: plan.denseQuantization, precision: precision)
        denseQuantization = plan.denseQuantization.map { "\($0.bits)-bit, groups of \($0.groupSize), \($0.tensors.count) tensors" }
    }

    var text: String {
        "plan '\(name)'      experts \(ByteCount.text(expertBytes)), dense \(ByteCount.text(denseBytes))"
            + (denseQuantization.map { " (dense quantized: \($0))" } ?? "")
    }
}
