import CKernels
import ExpertStore
import Foundation
import MoE

/// Variant numbers of derived expert records in the store, next to variant 0 (the imported
/// weights). The top four bits say what the record is:
/// - `0x1` quantized with round-to-nearest at `bits`/`group`: the same for every plan, so shared;
/// - `0x2` merged, `0x3` novice, `0x4` quantized for one plan (GPTQ, or from refit weights),
///   `0x5` refit, `0x6` shrunk (neurons removed, `ExpertShrinking`): they depend on the plan's profile, so the low bits carry a 20-bit tag of the
///   plan name (and, for `0x4`, the bit width).
public enum ExpertVariants {
    public static func quantized(_ format: QuantizationFormat) -> UInt32 {
        0x1000_0000 | UInt32(format.bits) << 16 | UInt32(format.groupSize)
    }
    public static func merged(plan: String) -> UInt32 { 0x2000_0000 | planTag(plan) << 4 }
    public static func novice(plan: String) -> UInt32 { 0x3000_0000 | planTag(plan) << 4 }
    public static func gptq(plan: String, bits: Int) -> UInt32 { 0x4000_0000 | planTag(plan) << 4 | UInt32(bits) }
    public static func refit(plan: String) -> UInt32 { 0x5000_0000 | planTag(plan) << 4 }
    public static func shrunk(plan: String) -> UInt32 { 0x6000_0000 | planTag(plan) << 4 }
    public static func isRefit(_ variant: UInt32) -> Bool { variant >> 28 == 0x5 }

    /// FNV-1a of the plan name, folded to 20 bits.
    public static func planTag(_ name: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in name.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return (hash ^ (hash >> 20)) & 0xF_FFFF
    }

    // MARK: Records

    /// The three projections as f32 matrices, then the biases (f32) when the expert has them.
    public static func record(_ key: ExpertKey, merged expert: FeedForward) -> ExpertRecord {
        let matrices = [expert.gate, expert.up, expert.down]
        return ExpertRecord(key: key, kind: .expertSwiGLU,
                            tensors: matrices.map { TensorLayout(dtype: .f32, shape: [$0.rows, $0.columns]) } + biasLayouts(expert.biases),
                            payloads: matrices.map { m in m.values.withUnsafeBytes { Array($0) } } + biasPayloads(expert.biases))
    }

    /// Weights in a 16-bit format of the imported experts (a refit expert keeps the imported
    /// expert's dtype: its gate and up projections narrow back to their stored bits exactly);
    /// biases, when the expert has them, in f32.
    public static func record(_ key: ExpertKey, weights expert: FeedForward, dtype: DType) -> ExpertRecord {
        guard dtype == .bf16 || dtype == .f16 else { return record(key, merged: expert) }
        let matrices = [expert.gate, expert.up, expert.down]
        return ExpertRecord(key: key, kind: .expertSwiGLU,
                            tensors: matrices.map { TensorLayout(dtype: dtype, shape: [$0.rows, $0.columns]) } + biasLayouts(expert.biases),
                            payloads: matrices.map { m in
                                var bits = [UInt16](repeating: 0, count: m.count)
                                if dtype == .bf16 { moe_f32_to_bf16(m.values, &bits, m.count) } else { moe_f32_to_f16(m.values, &bits, m.count) }
                                return bits.withUnsafeBytes { Array($0) }
                            } + biasPayloads(expert.biases))
    }

    public static func record(_ key: ExpertKey, novice vector: [Float]) -> ExpertRecord {
        ExpertRecord(key: key, kind: .expertConstant, tensors: [TensorLayout(dtype: .f32, shape: [vector.count])],
                     payloads: [vector.withUnsafeBytes { Array($0) }])
    }

    /// The three encoded matrices (U8), then the biases (f32) when the expert has them.
    public static func record(_ key: ExpertKey, quantized expert: QuantizedExpert) -> ExpertRecord {
        let parts = [expert.gate.encoded(), expert.up.encoded(), expert.down.encoded()]
        return ExpertRecord(key: key, kind: .expertQuantized,
                            tensors: parts.map { TensorLayout(dtype: .u8, shape: [$0.count]) } + biasLayouts(expert.biases),
                            payloads: parts + biasPayloads(expert.biases))
    }

    private static func biasLayouts(_ biases: ExpertBiases?) -> [TensorLayout] {
        biases?.all.map { TensorLayout(dtype: .f32, shape: [$0.count]) } ?? []
    }

    private static func biasPayloads(_ biases: ExpertBiases?) -> [[UInt8]] {
        biases?.all.map { b in b.withUnsafeBytes { Array($0) } } ?? []
    }
}

/// Builds experts from store records of any variant: the `ExpertVariantProvider` a plan loads through.
/// Derived records of a family whose experts have biases (gpt-oss) hold three more f32
/// tensors, the biases, after the projections; the activation is the layer's (`ExpertFunction`).
public struct StoreVariantProvider: ExpertVariantProvider, @unchecked Sendable {
    public let store: ExpertStore
    public let precision: WeightPrecision
    private let originals: StoreExpertSource
    private let description: ModelDescription

    /// `precision` says how original 16-bit experts are held (derived variants have their own formats).
    /// `inPlace`: original 16-bit experts used in the memory map rather than copied (see `StoreExpertSource.inPlace`).
    public init(store: ExpertStore, precision: WeightPrecision = .stored, inPlace: Bool = false) throws {
        self.store = store
        self.precision = precision
        originals = try StoreExpertSource(store: store, precision: precision, inPlace: inPlace)
        description = try store.modelDescription()
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
        let function = description.layers.indices.contains(layer) ? description.layers[layer].moe?.expertFunction ?? .swiglu : .swiglu
        let (h, f) = (description.hiddenSize, description.layers.indices.contains(layer) ? description.layers[layer].moe?.expertIntermediateSize ?? 0 : 0)
        /// The biases after the three weight tensors, when the layer's experts have them.
        func biases() throws -> ExpertBiases? {
            guard function.hasBias else {
                guard record.tensors.count == 3 else { throw corrupt("\(record.tensors.count) tensors; an expert without biases is three") }
                return nil
            }
            guard record.tensors.count == 6, record.tensors[3...].map(\.shape) == [[f], [f], [h]],
                  record.tensors[3...].allSatisfy({ $0.dtype == .f32 }) else {
                throw corrupt("an expert with biases is three weights and f32 biases [\(f)], [\(f)], [\(h)], found \(record.tensors.map { "\($0.dtype.rawValue)\($0.shape)" })")
            }
            return ExpertBiases(gate: floats(3), up: floats(4), down: floats(5))
        }
        switch record.kind {
        case .expertSwiGLU:
            let biases = try biases()
            let weights = record.tensors[0..<3]
            guard weights.allSatisfy({ $0.shape.count == 2 }) else { throw corrupt("an expert is three matrices") }
            if let format = HalfMatrix.Format(sharedBy: weights.map(\.dtype)) {
                let halves = (0..<3).map { i in
                    record.payloads[i].withUnsafeBytes {
                        HalfMatrix(rows: record.tensors[i].shape[0], columns: record.tensors[i].shape[1], format: format, copying: $0)
                    }
                }
                if precision == .stored {
                    guard let biases else { return HalfPrecisionExpert(gate: halves[0], up: halves[1], down: halves[2]) }
                    return BiasedExpert(gate: halves[0], up: halves[1], down: halves[2], gateBias: biases.gate, upBias: biases.up,
                                        downBias: biases.down, activation: function.activation)
                }
                let m = halves.map { Matrix(rows: $0.rows, columns: $0.columns, values: $0.widenedValues()) }
                return FeedForward(gate: m[0], up: m[1], down: m[2], biases: biases, gating: function.activation)
            }
            guard weights.allSatisfy({ $0.dtype == .f32 }) else { throw corrupt("derived experts are stored as f32, bf16 or f16 matrices") }
            let m = (0..<3).map { Matrix(rows: record.tensors[$0].shape[0], columns: record.tensors[$0].shape[1], values: floats($0)) }
            return FeedForward(gate: m[0], up: m[1], down: m[2], biases: biases, gating: function.activation)
        case .expertMXFP4:
            let biases = try biases()
            let m = try (0..<3).map { i -> MXFP4Matrix in
                guard let shape = MXFP4Matrix.logicalShape(dtype: record.tensors[i].dtype, shape: record.tensors[i].shape),
                      record.payloads[i].count == MXFP4Matrix.byteCount(rows: shape[0], columns: shape[1]) else {
                    throw corrupt("an MXFP4 expert is three U8 [rows, columns/32, 17] tensors")
                }
                return MXFP4Matrix(rows: shape[0], columns: shape[1], packed: record.payloads[i])
            }
            guard m[0].rows == m[1].rows, m[0].columns == m[1].columns, m[2].rows == m[0].columns, m[2].columns == m[0].rows else {
                throw corrupt("MXFP4 projections \(m.map { [$0.rows, $0.columns] }) do not fit together")
            }
            guard let biases else { return WeightSwiGLU(gate: m[0], up: m[1], down: m[2]) }
            return BiasedExpert(gate: m[0], up: m[1], down: m[2], gateBias: biases.gate, upBias: biases.up, downBias: biases.down,
                                activation: function.activation)
        case .expertConstant:
            guard record.tensors.count == 1, record.tensors[0].dtype == .f32 else { throw corrupt("a novice is one f32 vector") }
            return ConstantExpert(vector: floats(0))
        case .expertQuantized:
            let biases = try biases()
            do {
                return try QuantizedExpert(gate: QuantizedMatrix(decoding: record.payloads[0]),
                                           up: QuantizedMatrix(decoding: record.payloads[1]),
                                           down: QuantizedMatrix(decoding: record.payloads[2]),
                                           biases: biases, gating: function.activation)
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
