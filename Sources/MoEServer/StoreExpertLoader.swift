import CKernels
import Compression
import ExpertStore
import Foundation
import MoE

/// Builds one expert from its store record each time it is asked, keeping nothing itself:
/// the `ExpertCache` decides what stays in memory. (`StoreExpertSource` keeps every expert it
/// ever loaded, which is right for a fixed plan and wrong for a cache that must evict.)
/// Original weights are kept in their 16-bit format or widened to f32 as `precision` says,
/// with the same kernels the store loader uses, so an expert loaded here computes exactly
/// what the same expert loaded by `PlanLoader` with the same precision does.
public struct StoreExpertLoader: @unchecked Sendable {
    public let store: ExpertStore
    private let variants: StoreVariantProvider
    private let description: ModelDescription
    public let precision: ExpertPrecision

    public init(store: ExpertStore, precision: ExpertPrecision = .stored) throws {
        self.store = store
        self.precision = precision
        variants = try StoreVariantProvider(store: store, precision: precision)
        description = try store.modelDescription()
    }

    public func expert(layer: Int, expert: Int, variant: UInt32) throws -> any Expert {
        // Derived variants (quantized, merged, novice) are built from a copy of their record
        // and hold nothing of the provider; only the original weights need widening here.
        guard variant == 0 else { return try variants.expert(layer: layer, expert: expert, variant: variant) }
        let key = ExpertKey(layer: layer, expert: expert)
        guard let record = try store.expertRecord(key) else {
            throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
        }
        guard let moe = description.layers[layer].moe, record.kind == .expertSwiGLU, record.tensors.count == 3 else {
            throw StoreError.corruptRecord(path: store.path, record: "expert record (\(key))", reason: "not a SwiGLU expert of an MoE layer")
        }
        let (h, f) = (description.hiddenSize, moe.expertIntermediateSize)
        guard record.tensors.map(\.shape) == [[f, h], [f, h], [h, f]] else {
            throw StoreError.corruptRecord(path: store.path, record: "expert record (\(key))",
                                           reason: "expected gate/up [\(f), \(h)] and down [\(h), \(f)], found \(record.tensors.map(\.shape))")
        }
        let name = "expert record (\(key))"
        if precision == .stored, let format = HalfMatrix.Format(sharedBy: record.tensors.map(\.dtype)) {
            let m = (0..<3).map { i in
                HalfMatrix(rows: record.tensors[i].shape[0], columns: record.tensors[i].shape[1], format: format,
                           values: record.payloads[i].withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) })
            }
            return HalfPrecisionExpert(gate: m[0], up: m[1], down: m[2])
        }
        let m = try (0..<3).map { i in
            Matrix(rows: record.tensors[i].shape[0], columns: record.tensors[i].shape[1],
                   values: try Self.floats(record.payloads[i], dtype: record.tensors[i].dtype, record: name, store: store.path))
        }
        return FeedForward(gate: m[0], up: m[1], down: m[2])
    }

    static func floats(_ bytes: [UInt8], dtype: DType, record: String, store: String) throws -> [Float] {
        guard [.f32, .bf16, .f16].contains(dtype) else {
            throw StoreError.unsupportedDType(path: store, record: record, dtype: dtype.rawValue, purpose: "floating-point weights")
        }
        return bytes.withUnsafeBytes { raw -> [Float] in
            switch dtype {
            case .f32:
                return Array(raw.bindMemory(to: Float.self))
            case .bf16, .f16:
                // Array storage is at least 8-byte aligned, as the uint16_t kernels need.
                let n = bytes.count / 2
                let halves = raw.bindMemory(to: UInt16.self).baseAddress!
                return [Float](unsafeUninitializedCapacity: n) { buffer, count in
                    if dtype == .bf16 { moe_bf16_to_f32(halves, buffer.baseAddress, n) } else { moe_f16_to_f32(halves, buffer.baseAddress, n) }
                    count = n
                }
            default:
                preconditionFailure("checked above")
            }
        }
    }
}

/// One plan's slots, fetched through a shared `ExpertCache`: the expert source of a plan
/// served with `--auto`, or of any plan whose experts do not all fit in memory (or are
/// bounded by `--max-expert-memory`). Nothing is loaded until a token is routed to it.
public final class CachedPlanExpertSource: ExpertSource, @unchecked Sendable {
    public let plan: CompressionPlan
    private let cache: ExpertCache
    private let loader: StoreExpertLoader

    public init(plan: CompressionPlan, cache: ExpertCache, loader: StoreExpertLoader) {
        self.plan = plan
        self.cache = cache
        self.loader = loader
    }

    public func expert(layer: Int, index: Int) throws -> any Expert {
        guard plan.layers.indices.contains(layer), let slots = plan.layers[layer]?.slots, slots.indices.contains(index) else {
            throw ModelError.noSuchExpert(layer: layer, expert: index)
        }
        let record = slots[index].record
        return try cache.expert(ExpertCache.Key(layer: layer, expert: record.expert, variant: record.variant)) {
            try loader.expert(layer: layer, expert: record.expert, variant: record.variant)
        }
    }
}

extension CachedPlanExpertSource {
    /// `plan` as a runnable model whose experts come through `cache`: the store's dense
    /// weights, the plan's router maps, and its slots loaded by `loader` on first use.
    public static func model(plan: CompressionPlan, store: ExpertStore, cache: ExpertCache, loader: StoreExpertLoader) throws -> MoEModel {
        try MoEModel(description: store.modelDescription(), tensors: PlanTensorProvider(store: store, quantization: plan.denseQuantization),
                     experts: CachedPlanExpertSource(plan: plan, cache: cache, loader: loader), expertMaps: plan.expertMaps,
                     precision: loader.precision)
    }
}
