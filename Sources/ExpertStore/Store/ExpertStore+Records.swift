import Foundation
import MoE

/// One expert record as stored: what it holds and each tensor's bytes.
public struct ExpertRecord: Sendable, Equatable {
    public var key: ExpertKey
    public var kind: RecordKind
    public var tensors: [TensorLayout]
    public var payloads: [[UInt8]]

    public init(key: ExpertKey, kind: RecordKind, tensors: [TensorLayout], payloads: [[UInt8]]) {
        precondition(tensors.count == payloads.count && zip(tensors, payloads).allSatisfy { $0.byteCount == $1.count })
        self.key = key
        self.kind = kind
        self.tensors = tensors
        self.payloads = payloads
    }

    /// Bytes of tensor data (what a loader keeps in memory, before widening).
    public var byteCount: Int { payloads.reduce(0) { $0 + $1.count } }
}

extension ExpertStore {
    /// Writes derived expert records (quantized, merged, novice variants) and an optional
    /// document in one transaction: either everything lands or nothing does.
    public func putExpertRecords(_ records: [ExpertRecord], plan: (name: String, json: Data)? = nil) throws {
        guard !isReadOnly else { throw StoreError.readOnly(path: path, operation: "writing expert variants") }
        for record in records where record.key.variant == .original {
            throw StoreError.corruptRecord(path: path, record: "expert record (\(record.key))", reason: "variant 0 holds the imported weights and cannot be overwritten")
        }
        try environment.write { txn in
            for record in records {
                let length = RecordCodec.recordLength(for: record.tensors)
                try txn.reserve(experts, record.key.bytes, count: length) { target in
                    var sources = [UnsafeRawBufferPointer]()
                    var keepAlive = [UnsafeMutableRawBufferPointer]()
                    for payload in record.payloads {
                        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(payload.count, 1), alignment: 16)
                        payload.withUnsafeBytes { copy.copyMemory(from: $0) }
                        keepAlive.append(copy)
                        sources.append(UnsafeRawBufferPointer(rebasing: copy[0..<payload.count]))
                    }
                    defer { keepAlive.forEach { $0.deallocate() } }
                    RecordCodec.encode(kind: record.kind, tensors: record.tensors, sources: sources, into: target)
                }
            }
            if let plan {
                try txn.put(planDatabase, Array(plan.name.utf8), Array(plan.json))
            }
        }
    }

    /// A verified copy of the record at `key`, or nil when there is none.
    public func expertRecord(_ key: ExpertKey) throws -> ExpertRecord? {
        let name = "expert record (\(key))"
        return try environment.read { txn -> ExpertRecord? in
            guard let bytes = try txn.get(experts, key.bytes) else { return nil }
            let header = try RecordCodec.header(of: bytes, name: name, store: path)
            try RecordCodec.verify(bytes, header: header, name: name, store: path)
            let payloads = header.tensors.indices.map { Array(RecordCodec.tensorBytes(bytes, header: header, index: $0)) }
            return ExpertRecord(key: key, kind: header.kind, tensors: header.tensors, payloads: payloads)
        }
    }

    /// Whether a record exists at `key` (no verification).
    public func containsExpertRecord(_ key: ExpertKey) throws -> Bool {
        try environment.read { txn in try txn.get(experts, key.bytes) != nil }
    }
}

