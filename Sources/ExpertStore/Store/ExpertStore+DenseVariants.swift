import Foundation
import MoE

/// Dense tensors a plan derived (quantized attention, shared experts, output head), stored in
/// the dense database next to the imported tensors under `name#variant`; `#` never occurs in
/// checkpoint names, so readers of the imported tensors skip them.
extension ExpertStore {
    public static func denseVariantKey(_ name: String, variant: String) -> String { "\(name)#\(variant)" }

    static func isDenseVariantKey(_ key: String) -> Bool { key.contains("#") }

    /// Writes encoded variants in one transaction.
    public func putDenseVariants(_ variants: [(name: String, variant: String, bytes: [UInt8])]) throws {
        guard !isReadOnly else { throw StoreError.readOnly(path: path, operation: "writing dense variants") }
        try environment.write { txn in
            for v in variants {
                let layout = TensorLayout(dtype: .u8, shape: [v.bytes.count])
                try txn.reserve(dense, Array(Self.denseVariantKey(v.name, variant: v.variant).utf8), count: RecordCodec.recordLength(for: [layout])) { target in
                    v.bytes.withUnsafeBytes { RecordCodec.encode(kind: .denseQuantized, tensors: [layout], sources: [$0], into: target) }
                }
            }
        }
    }

    public func containsDenseVariant(_ name: String, variant: String) throws -> Bool {
        try environment.read { txn in try txn.get(dense, Array(Self.denseVariantKey(name, variant: variant).utf8)) != nil }
    }

    /// A verified copy of a variant's bytes, or nil when it is not stored.
    public func denseVariant(_ name: String, variant: String) throws -> [UInt8]? {
        let key = Self.denseVariantKey(name, variant: variant)
        let record = "dense variant '\(key)'"
        return try environment.read { txn -> [UInt8]? in
            guard let bytes = try txn.get(dense, Array(key.utf8)) else { return nil }
            let header = try RecordCodec.header(of: bytes, name: record, store: path)
            guard header.kind == .denseQuantized, header.tensors.count == 1 else {
                throw StoreError.corruptRecord(path: path, record: record, reason: "not a quantized dense tensor record")
            }
            try RecordCodec.verify(bytes, header: header, name: record, store: path)
            return Array(RecordCodec.tensorBytes(bytes, header: header, index: 0))
        }
    }
}
