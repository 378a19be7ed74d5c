import CLMDB
import Foundation

/// A named collection of JSON documents inside the store: the routing profiles or the
/// compression plans. Each put is its own transaction.
public struct StoredDocuments: Sendable {
    let store: ExpertStore
    let database: MDB_dbi
    /// "profile" or "plan", for messages.
    let kind: String

    /// Stores `value` under `name`, replacing any document of that name.
    public func put<T: Encodable>(_ value: T, named name: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = Array(try encoder.encode(value))
        try store.environment.write { txn in try txn.put(database, key(name), bytes) }
    }

    /// The document stored under `name`, or nil when there is none.
    public func get<T: Decodable>(_ type: T.Type, named name: String) throws -> T? {
        guard let bytes = try raw(named: name) else { return nil }
        do { return try JSONDecoder().decode(T.self, from: bytes) } catch {
            throw StoreError.malformedDocument(path: store.path, record: "\(kind) '\(name)'", reason: "\(error)")
        }
    }

    /// The stored JSON bytes of `name`, or nil.
    public func raw(named name: String) throws -> Data? {
        try store.environment.read { txn in try txn.get(database, key(name)).map { Data($0) } }
    }

    /// Every document name, sorted.
    public func names() throws -> [String] {
        var names = [String]()
        try store.environment.read { txn in
            try txn.forEach(database) { key, _ in
                names.append(String(decoding: key, as: UTF8.self))
                return true
            }
        }
        return names
    }

    /// Deletes `name`; false when there was no such document.
    @discardableResult
    public func remove(named name: String) throws -> Bool {
        try store.environment.write { txn in try txn.delete(database, key(name)) }
    }

    private func key(_ name: String) -> [UInt8] { Array(name.utf8) }
}
