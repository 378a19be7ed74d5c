import Foundation
import Synchronization
import MoE

/// Experts fetched from the store one record at a time: an `ExpertSource` for the forward
/// pass that reads only the experts it is asked for (optionally only those in `allowed`).
///
/// Each expert is loaded on first touch (or up front with `load(_:)`): its record's
/// CRC-32C is checked once, then an f32 record whose weights are 16-byte aligned in the map
/// is used in place (`MappedExpert`). With `ExpertPrecision.stored` a BF16/F16 record is
/// copied as it is (`HalfPrecisionExpert`, computed by half-precision kernels); anything else
/// is widened to f32 once (`FeedForward`). Either way its mapped pages are then released, so
/// only the copy stays resident.
///
/// Threads: the source holds one long-lived read transaction (a consistent snapshot; its
/// pages stay mapped and unchanged while the source lives). LMDB lets one thread use a
/// transaction at a time, so record look-ups (microseconds) go through a lock; checksums,
/// widening and every forward pass run concurrently. The trade-off: while a source is alive,
/// a writer in another process cannot reuse the pages of this snapshot, so the file grows
/// instead; release sources you no longer need.
public final class StoreExpertSource: ExpertSource, Sendable {
    public let store: ExpertStore
    public let variant: ExpertVariant
    /// The experts this source may load; nil allows all.
    public let allowed: Set<ExpertID>?
    /// Whether 16-bit records are widened to f32 (bit-identical to the checkpoint path) or kept.
    public let precision: WeightPrecision
    /// Whether kept 16-bit records are used in place in the memory map instead of copied.
    /// In place, an expert costs no process memory of its own: its pages are the kernel's
    /// page cache, read on use and dropped under pressure, which is what a pass streamed
    /// layer by layer wants (a layer's 128 experts would otherwise be a resident copy).
    /// Copies (the default) keep a server's resident memory exactly its plan's experts.
    public let inPlace: Bool
    private let description: ModelDescription
    private let snapshot: LMDBSnapshot
    private let loaded = Mutex([ExpertID: any Expert]())

    public init(store: ExpertStore, variant: ExpertVariant = .original, allowing allowed: Set<ExpertID>? = nil,
                precision: WeightPrecision = .stored, inPlace: Bool = false) throws {
        self.store = store
        self.precision = precision
        self.inPlace = inPlace
        self.variant = variant
        self.allowed = allowed
        description = try store.modelDescription()
        snapshot = try store.environment.snapshot()
    }

    /// The original experts of one layer, used in place in the map: what a pass streamed layer
    /// by layer runs that layer with, released before the next.
    public static func layer(_ l: Int, of store: ExpertStore, precision: WeightPrecision = .stored) throws -> StoreExpertSource {
        let count = try store.modelDescription().layers[l].moe?.expertCount ?? 0
        return try StoreExpertSource(store: store, allowing: Set((0..<count).map { ExpertID(layer: l, expert: $0) }),
                                     precision: precision, inPlace: true)
    }

    public func expert(layer: Int, index: Int) throws -> any Expert {
        let id = ExpertID(layer: layer, expert: index)
        if let cached = loaded.withLock({ $0[id] }) { return cached }
        if let allowed, !allowed.contains(id) {
            throw StoreError.expertNotLoaded(path: store.path, layer: layer, expert: index, allowedCount: allowed.count)
        }
        let made = try makeExpert(id)
        // Another thread may have loaded it meanwhile; keep the first so all callers share one.
        return loaded.withLock { loaded in
            if let existing = loaded[id] { return existing }
            loaded[id] = made
            return made
        }
    }

    /// A new copy of one expert, built as `expert(layer:index:)` builds it but not kept here:
    /// for a cache that decides itself what stays in memory.
    public func uncachedExpert(layer: Int, index: Int) throws -> any Expert {
        let id = ExpertID(layer: layer, expert: index)
        if let allowed, !allowed.contains(id) {
            throw StoreError.expertNotLoaded(path: store.path, layer: layer, expert: index, allowedCount: allowed.count)
        }
        return try makeExpert(id)
    }

    /// Loads `ids` now (checksums verified) instead of on first use.
    public func load(_ ids: some Sequence<ExpertID>) throws {
        for id in ids { _ = try expert(layer: id.layer, index: id.expert) }
    }

    /// Every expert of every MoE layer, in key order.
    public var allExpertIDs: [ExpertID] {
        description.moeLayerIndices.flatMap { l in (0..<description.layers[l].moe!.expertCount).map { ExpertID(layer: l, expert: $0) } }
    }

    /// Bytes of expert weights loaded so far (mapped f32 weights count once touched).
    public var residentBytes: Int {
        loaded.withLock { $0.values.reduce(0) { $0 + $1.residentBytes } }
    }

    public var loadedCount: Int {
        loaded.withLock { $0.count }
    }

    private func makeExpert(_ id: ExpertID) throws -> any Expert {
        let key = ExpertKey(layer: id.layer, expert: id.expert, variant: variant)
        let name = "expert record (\(key))"
        guard description.layers.indices.contains(id.layer), let moe = description.layers[id.layer].moe,
              (0..<moe.expertCount).contains(id.expert) else {
            throw ModelError.noSuchExpert(layer: id.layer, expert: id.expert)
        }
        let record = try snapshot.withTransaction { txn -> UnsafeRawBufferPointer in
            guard let record = try txn.get(store.experts, key.bytes) else {
                throw StoreError.missingRecord(path: store.path, record: name)
            }
            return record
        }
        let header = try RecordCodec.header(of: record, name: name, store: store.path)
        let (h, f) = (description.hiddenSize, moe.expertIntermediateSize)
        if header.kind == .expertMXFP4 { return try mxfp4Expert(record, header: header, name: name, hidden: h, intermediate: f) }
        let function = moe.expertFunction
        let biasShapes = function.hasBias ? [[f], [f], [h]] : []
        guard header.kind == .expertSwiGLU, header.tensors.map(\.shape) == [[f, h], [f, h], [h, f]] + biasShapes else {
            let biases = function.hasBias ? " and biases [\(f)], [\(f)], [\(h)]" : ""
            throw StoreError.corruptRecord(path: store.path, record: name,
                                           reason: "expected gate/up [\(f), \(h)] and down [\(h), \(f)]\(biases), found \(header.tensors.map(\.shape))")
        }
        try RecordCodec.verify(record, header: header, name: name, store: store.path)
        if function != .swiglu { return try makeBiasedExpert(record, header: header, name: name, function: function) }
        let parts = (0..<3).map { RecordCodec.tensorBytes(record, header: header, index: $0) }
        let mappedF32 = header.tensors.allSatisfy { $0.dtype == .f32 } && parts.allSatisfy { Int(bitPattern: $0.baseAddress) % 16 == 0 }
        if mappedF32 {
            return MappedExpert(gate: parts[0].baseAddress!.assumingMemoryBound(to: Float.self),
                                up: parts[1].baseAddress!.assumingMemoryBound(to: Float.self),
                                down: parts[2].baseAddress!.assumingMemoryBound(to: Float.self),
                                hidden: h, intermediate: f, owner: snapshot)
        }
        if precision == .stored, let format = HalfMatrix.Format(sharedBy: header.tensors.map(\.dtype)),
           self.inPlace, parts.allSatisfy({ Int(bitPattern: $0.baseAddress) % 2 == 0 }) {
            let m = (0..<3).map { i in
                HalfMatrix(rows: header.tensors[i].shape[0], columns: header.tensors[i].shape[1], format: format,
                           bits: parts[i].baseAddress!.assumingMemoryBound(to: UInt16.self), owner: snapshot)
            }
            return HalfPrecisionExpert(gate: m[0], up: m[1], down: m[2])
        }
        if precision == .stored, let format = HalfMatrix.Format(sharedBy: header.tensors.map(\.dtype)) {
            // Copied out and the mapped pages released, as for widened experts: resident
            // memory is then exactly the plan's experts, whatever the kernel maps around them.
            let m = (0..<3).map { i in
                HalfMatrix(rows: header.tensors[i].shape[0], columns: header.tensors[i].shape[1], format: format,
                           values: [UInt16](unsafeUninitializedCapacity: parts[i].count / 2) { buffer, count in
                               UnsafeMutableRawBufferPointer(buffer).copyMemory(from: parts[i])
                               count = parts[i].count / 2
                           })
            }
            MappedPages.release(record)
            return HalfPrecisionExpert(gate: m[0], up: m[1], down: m[2])
        }
        let m = try (0..<3).map { try TensorWidening.matrix(parts[$0], layout: header.tensors[$0], record: name, store: store.path) }
        MappedPages.release(record)
        return FeedForward(gate: m[0], up: m[1], down: m[2])
    }

    /// An expert with biases and its family's activation (gpt-oss): the three weights as
    /// stored (16-bit, copied or in place) or widened, the biases widened to f32.
    private func makeBiasedExpert(_ record: UnsafeRawBufferPointer, header: RecordHeader, name: String,
                                  function: ExpertFunction) throws -> any Expert {
        let parts = header.tensors.indices.map { RecordCodec.tensorBytes(record, header: header, index: $0) }
        let weightTypes = header.tensors[0..<3].map(\.dtype)
        var weights = [any LinearWeight]()
        if precision == .stored, let format = HalfMatrix.Format(sharedBy: Array(weightTypes)) {
            for i in 0..<3 {
                let (rows, columns) = (header.tensors[i].shape[0], header.tensors[i].shape[1])
                if inPlace, Int(bitPattern: parts[i].baseAddress) % 2 == 0 {
                    weights.append(HalfMatrix(rows: rows, columns: columns, format: format,
                                              bits: parts[i].baseAddress!.assumingMemoryBound(to: UInt16.self), owner: snapshot))
                } else {
                    weights.append(HalfMatrix(rows: rows, columns: columns, format: format,
                                              values: [UInt16](unsafeUninitializedCapacity: parts[i].count / 2) { buffer, count in
                                                  UnsafeMutableRawBufferPointer(buffer).copyMemory(from: parts[i])
                                                  count = parts[i].count / 2
                                              }))
                }
            }
        } else {
            weights = try (0..<3).map { try TensorWidening.matrix(parts[$0], layout: header.tensors[$0], record: name, store: store.path) }
        }
        let biases = try (3..<6).map { try TensorWidening.matrix(parts[$0], layout: header.tensors[$0], record: name, store: store.path).values }
        if !inPlace { MappedPages.release(record) }
        return BiasedExpert(gate: weights[0], up: weights[1], down: weights[2],
                            gateBias: biases[0], upBias: biases[1], downBias: biases[2], activation: function.activation)
    }

    /// An expert kept in MXFP4: its codes and scales copied out of the map as they are.
    private func mxfp4Expert(_ record: UnsafeRawBufferPointer, header: RecordHeader, name: String,
                             hidden h: Int, intermediate f: Int) throws -> any Expert {
        let logical = [[f, h], [f, h], [h, f]]
        guard header.tensors.count == 3,
              header.tensors.map({ MXFP4Matrix.logicalShape(dtype: $0.dtype, shape: $0.shape) }) == logical,
              h % MXFP4Matrix.groupSize == 0, f % MXFP4Matrix.groupSize == 0 else {
            throw StoreError.corruptRecord(path: store.path, record: name,
                reason: "expected MXFP4 gate/up \(MXFP4Matrix.storedShape(rows: f, columns: h)) and down \(MXFP4Matrix.storedShape(rows: h, columns: f)), found \(header.tensors.map(\.shape))")
        }
        try RecordCodec.verify(record, header: header, name: name, store: store.path)
        let m = (0..<3).map { i in
            MXFP4Matrix(rows: logical[i][0], columns: logical[i][1], packed: Array(RecordCodec.tensorBytes(record, header: header, index: i)))
        }
        MappedPages.release(record)
        return WeightSwiGLU(gate: m[0], up: m[1], down: m[2])
    }
}
