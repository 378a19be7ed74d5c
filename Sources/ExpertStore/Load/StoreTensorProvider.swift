import Foundation
import MoE

/// The store's dense tensors (embeddings, attention, norms, routers, shared experts) by
/// their checkpoint names, so `MoEModel(description:tensors:experts:)` runs from a store.
/// Each tensor's checksum is verified every time it is read; the model reads each once.
public final class StoreTensorProvider: TensorProvider, @unchecked Sendable {
    public let store: ExpertStore
    private let snapshot: LMDBSnapshot
    /// Header of every dense record, read once when the provider is made.
    private let headers: [String: RecordHeader]

    public init(store: ExpertStore) throws {
        self.store = store
        snapshot = try store.environment.snapshot()
        var headers = [String: RecordHeader]()
        try snapshot.withTransaction { txn in
            try txn.forEach(store.dense) { key, value in
                let name = String(decoding: key, as: UTF8.self)
                if ExpertStore.isDenseVariantKey(name) { return true }   // a plan's derived copy, not a checkpoint tensor
                let header = try RecordCodec.header(of: value, name: Self.recordName(name), store: store.path)
                guard header.kind == .denseTensor, header.tensors.count == 1 else {
                    throw StoreError.corruptRecord(path: store.path, record: Self.recordName(name), reason: "not a dense tensor record")
                }
                headers[name] = header
                return true
            }
        }
        self.headers = headers
    }

    static func recordName(_ name: String) -> String { "dense tensor '\(name)'" }

    public var location: String { store.path }

    public var names: [String] { headers.keys.sorted() }

    public func contains(_ name: String) -> Bool { headers[name] != nil }

    public func layout(_ name: String) throws -> TensorLayout {
        guard let header = headers[name] else { throw CheckpointError.missingTensor(tensor: name, location: store.path) }
        return header.tensors[0]
    }

    public func shape(_ name: String) throws -> [Int] { try layout(name).shape }

    public func matrix(_ name: String) throws -> Matrix {
        try withVerifiedBytes(name) { bytes, layout in
            try TensorWidening.matrix(bytes, layout: layout, record: Self.recordName(name), store: store.path)
        }
    }

    /// A 2-D BF16/F16 tensor copied out of the map as stored (its pages released after); nil
    /// for other dtypes or ranks.
    public func halfMatrix(_ name: String) throws -> HalfMatrix? {
        try withVerifiedBytes(name) { bytes, layout in
            guard layout.shape.count == 2, let format = HalfMatrix.Format(sharedBy: [layout.dtype]) else { return nil }
            let matrix = HalfMatrix(rows: layout.shape[0], columns: layout.shape[1], format: format, copying: bytes)
            MappedPages.release(bytes)
            return matrix
        }
    }

    /// Runs `body` on the tensor's raw bytes (in the memory map) after checking the record's CRC.
    public func withVerifiedBytes<T>(_ name: String, _ body: (UnsafeRawBufferPointer, TensorLayout) throws -> T) throws -> T {
        let recordName = Self.recordName(name)
        let record = try snapshot.withTransaction { txn -> UnsafeRawBufferPointer in
            guard let record = try txn.get(store.dense, Array(name.utf8)) else {
                throw CheckpointError.missingTensor(tensor: name, location: store.path)
            }
            return record
        }
        let header = try RecordCodec.header(of: record, name: recordName, store: store.path)
        try RecordCodec.verify(record, header: header, name: recordName, store: store.path)
        return try body(RecordCodec.tensorBytes(record, header: header, index: 0), header.tensors[0])
    }
}
