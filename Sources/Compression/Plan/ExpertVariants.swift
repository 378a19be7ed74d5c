import ExpertStore
import Foundation
import MoE

/// Variant numbers of derived expert records in the store, next to variant 0 (the imported
/// weights). The top four bits say what the record is:
/// - `0x1` quantized with round-to-nearest at `bits`/`group`: the same for every plan, so shared;
/// - `0x2` merged, `0x3` novice, `0x4` GPTQ-quantized: they depend on the plan's profile, so
///   the low bits carry a 20-bit tag of the plan name (and, for GPTQ, the bit width).
public enum ExpertVariants {
    public static func quantized(_ format: QuantizationFormat) -> UInt32 {
        0x1000_0000 | UInt32(format.bits) << 16 | UInt32(format.groupSize)
    }
    public static func merged(plan: String) -> UInt32 { 0x2000_0000 | planTag(plan) << 4 }
    public static func novice(plan: String) -> UInt32 { 0x3000_0000 | planTag(plan) << 4 }
    public static func gptq(plan: String, bits: Int) -> UInt32 { 0x4000_0000 | planTag(plan) << 4 | UInt32(bits) }

    /// FNV-1a of the plan name, folded to 20 bits.
    public static func planTag(_ name: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in name.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return (hash ^ (hash >> 20)) & 0xF_FFFF
    }

    // MARK: Records

    public static func record(_ key: ExpertKey, merged expert: FeedForward) -> ExpertRecord {
        let matrices = [expert.gate, expert.up, expert.down]
        return ExpertRecord(key: key, kind: .expertSwiGLU,
                            tensors: matrices.map { TensorLayout(dtype: .f32, shape: [$0.rows, $0.columns]) },
                            payloads: matrices.map { m in m.values.withUnsafeBytes { Array($0) } })
    }

    public static func record(_ key: ExpertKey, novice vector: [Float]) -> ExpertRecord {
        ExpertRecord(key: key, kind: .expertConstant, tensors: [TensorLayout(dtype: .f32, shape: [vector.count])],
                     payloads: [vector.withUnsafeBytes { Array($0) }])
    }

    public static func record(_ key: ExpertKey, quantized expert: QuantizedExpert) -> ExpertRecord {
        let parts = [expert.gate.encoded(), expert.up.encoded(), expert.down.encoded()]
        return ExpertRecord(key: key, kind: .expertQuantized, tensors: parts.map { TensorLayout(dtype: .u8, shape: [$0.count]) },
                            payloads: parts)
    }
}

/// Builds experts from store records of any variant: the `ExpertVariantProvider` a plan loads through.
public struct StoreVariantProvider: ExpertVariantProvider, @unchecked Sendable {
    public let store: ExpertStore
    private let originals: StoreExpertSource

    /// `precision` says how original 16-bit experts are held (derived variants have their own formats).
    /// `inPlace`: original 16-bit experts used in the memory map rather than copied (see `StoreExpertSource.inPlace`).
    public init(store: ExpertStore, precision: WeightPrecision = .stored, inPlace: Bool = false) throws {
        self.store = store
        originals = try StoreExpertSource(store: store, precision: precision, inPlace: inPlace)
    }

    public func expert(layer: Int, expert: Int, variant: UInt32) throws -> any Expert {
        if variant == 0 { return try originals.expert(layer: layer, index: expert) }
        let key = ExpertKey(layer: layer, expert: expert, variant: ExpertVariant(rawValue: variant))
        guard let record = try store.expertRecord(key) else {
            throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
        }
        func floats(_ i: Int) -> [Float] {
            record.payloads[i].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        func corrupt(_ reason: String) -> StoreError { .corruptRecord(path: store.path, record: "expert record (\(key))", reason: reason) }
        switch record.kind {
        case .expertSwiGLU:
            guard record.tensors.allSatisfy({ $0.dtype == .f32 && $0.shape.count == 2 }) else { throw corrupt("merged experts are stored as f32 matrices") }
            let m = (0..<3).map { Matrix(rows: record.tensors[$0].shape[0], columns: record.tensors[$0].shape[1], values: floats($0)) }
            return FeedForward(gate: m[0], up: m[1], down: m[2])
        case .expertConstant:
            guard record.tensors.count == 1, record.tensors[0].dtype == .f32 else { throw corrupt("a novice is one f32 vector") }
            return ConstantExpert(vector: floats(0))
        case .expertQuantized:
            do {
                return try QuantizedExpert(gate: QuantizedMatrix(decoding: record.payloads[0]),
                                           up: QuantizedMatrix(decoding: record.payloads[1]),
                                           down: QuantizedMatrix(decoding: record.payloads[2]))
            } catch {
                throw corrupt("\(error)")
            }
        case .denseTensor, .denseQuantized:
            throw corrupt("a dense tensor record in the experts database")
        }
    }
}

/// Opening a stored plan as a runnable model: the store's dense weights, the plan's router
/// maps, and exactly the plan's expert slots.
public enum PlanLoader {
    public static func plan(named name: String, in store: ExpertStore) throws -> CompressionPlan {
        guard let plan = try store.plans.get(CompressionPlan.self, named: name) else {
            throw PlanError.unknownPlan(name: name, available: try store.plans.names())
        }
        try plan.validate(against: store.modelDescription(), fingerprint: store.fingerprint())
        return plan
    }

    /// `precision`: `.stored` (the default) keeps original BF16/F16 weights in their format;
    /// `.float32` widens them (the checkpoint's logits bit for bit at `.float32`).
    public static func model(plan: CompressionPlan, store: ExpertStore,
                             precision: WeightPrecision = .stored) throws -> (model: MoEModel, experts: PlanExpertSource) {
        let experts = try PlanExpertSource(plan: plan, provider: StoreVariantProvider(store: store, precision: precision))
        let model = try MoEModel(description: store.modelDescription(), tensors: PlanTensorProvider(store: store, quantization: plan.denseQuantization),
                                 experts: experts, expertMaps: plan.expertMaps, precision: precision)
        return (model, experts)
    }
}
