import CLMDB
import Foundation
import MoE

/// An expert store: one LMDB environment (a directory with `data.mdb` and `lock.mdb`)
/// holding a model's metadata, dense tensors, one record per expert, and the profiles and
/// plans made from it. See `StoreSchema` for the databases and `RecordCodec` for records.
///
/// `ExpertStore(url:)` opens a finished store for use, read-only by default, which is how
/// serving opens it; any number of processes may do so at once. Within a process, every
/// `ExpertStore` of one path shares one LMDB environment (LMDB forbids opening it twice).
public final class ExpertStore: @unchecked Sendable {
    public let url: URL
    let environment: LMDBEnvironment
    let meta: MDB_dbi
    let dense: MDB_dbi
    let experts: MDB_dbi
    let profileDatabase: MDB_dbi
    let planDatabase: MDB_dbi

    public var path: String { url.path }
    public var isReadOnly: Bool { environment.readOnly }

    /// Opens a store whose import has completed. Throws `importIncomplete` (saying how to
    /// resume) when it has not, and `notAStore` when nothing was ever committed.
    public convenience init(url: URL, readOnly: Bool = true) throws {
        try self.init(environment: LMDBEnvironment.open(directory: url, readOnly: readOnly), url: url)
        guard let state = try importState() else {
            throw StoreError.notAStore(path: path, reason: "it has no import record; run `moekit import --store \(path)` to create it")
        }
        guard state.phase == .complete else {
            throw StoreError.importIncomplete(path: path, completedLayers: state.completedLayers.count,
                                              totalLayers: state.moeLayers.count, source: state.source)
        }
        // Stores imported before config.json was range-checked may hold a description that
        // traps later (a zero top-k): the kept config.json is checked again on every open.
        if let config = try file("config.json") {
            _ = try Architectures.describe(configData: config, file: "config.json in \(path)")
        }
    }

    /// Opens the databases of `environment` whatever the import state (the importer's way in).
    /// A writable environment gets any missing database created.
    init(environment: LMDBEnvironment, url: URL) throws {
        self.url = url
        self.environment = environment
        func open(_ database: StoreSchema.Database) throws -> MDB_dbi {
            guard let dbi = try environment.openDatabase(database.rawValue, create: !environment.readOnly) else {
                throw StoreError.notAStore(path: url.path, reason: "it has no '\(database.rawValue)' database; the import never committed anything, run `moekit import --store \(url.path)`")
            }
            return dbi
        }
        meta = try open(.meta)
        dense = try open(.dense)
        experts = try open(.experts)
        profileDatabase = try open(.profiles)
        planDatabase = try open(.plans)
        if let version = try metaBytes(StoreSchema.MetaKey.format) {
            guard version.count == 4 else {
                throw StoreError.corruptRecord(path: path, record: "meta 'format'", reason: "\(version.count) bytes, expected 4")
            }
            let value = version.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
            guard value == StoreSchema.formatVersion else {
                throw StoreError.unsupportedFormat(path: path, record: "the store", version: Int(value))
            }
        }
    }

    // MARK: Metadata

    /// A copy of the meta value under `key`, or nil.
    func metaBytes(_ key: String) throws -> [UInt8]? {
        try environment.read { txn in try txn.get(meta, Array(key.utf8)).map { Array($0) } }
    }

    func metaJSON<T: Decodable>(_ type: T.Type, _ key: String) throws -> T? {
        guard let bytes = try metaBytes(key) else { return nil }
        do { return try JSONDecoder().decode(T.self, from: Data(bytes)) } catch {
            throw StoreError.malformedDocument(path: path, record: "meta '\(key)'", reason: "\(error)")
        }
    }

    public func importState() throws -> ImportState? { try metaJSON(ImportState.self, StoreSchema.MetaKey.importState) }

    /// The normalised description the model is run from.
    public func modelDescription() throws -> ModelDescription {
        guard let description = try metaJSON(ModelDescription.self, StoreSchema.MetaKey.description) else {
            throw StoreError.missingRecord(path: path, record: "meta 'description'")
        }
        return description
    }

    public func fingerprint() throws -> String? {
        try metaBytes(StoreSchema.MetaKey.fingerprint).map { String(decoding: $0, as: UTF8.self) }
    }

    /// An original checkpoint file (`config.json`, `tokenizer.json`, …) kept byte for byte.
    public func file(_ name: String) throws -> Data? {
        try metaBytes(StoreSchema.MetaKey.file(name)).map { Data($0) }
    }

    /// Names of the original checkpoint files the store keeps.
    public func fileNames() throws -> [String] {
        let prefix = Array(StoreSchema.MetaKey.filePrefix.utf8)
        var names = [String]()
        try environment.read { txn in
            try txn.forEach(meta, from: prefix) { key, _ in
                guard key.starts(with: prefix) else { return false }
                names.append(String(decoding: key.dropFirst(prefix.count), as: UTF8.self))
                return true
            }
        }
        return names
    }

    // MARK: Contents

    /// Every expert key, in key order (layer by layer).
    public func expertKeys() throws -> [ExpertKey] {
        var keys = [ExpertKey]()
        try environment.read { txn in
            try txn.forEach(experts) { key, _ in
                guard let decoded = ExpertKey(bytes: key) else {
                    throw StoreError.corruptRecord(path: path, record: "an expert key", reason: "\(key.count) bytes, expected \(ExpertKey.byteCount)")
                }
                keys.append(decoded)
                return true
            }
        }
        return keys
    }

    /// Names of all dense tensors, sorted.
    public func denseTensorNames() throws -> [String] {
        var names = [String]()
        try environment.read { txn in
            try txn.forEach(dense) { key, _ in
                let name = String(decoding: key, as: UTF8.self)
                if !Self.isDenseVariantKey(name) { names.append(name) }
                return true
            }
        }
        return names
    }

    /// Entries and bytes (pages × page size) of each named database.
    public func databaseUsage() throws -> [DatabaseUsage] {
        let all: [(StoreSchema.Database, MDB_dbi)] = [(.meta, meta), (.dense, dense), (.experts, experts),
                                                      (.profiles, profileDatabase), (.plans, planDatabase)]
        return try environment.read { txn in
            try all.map { database, dbi in
                let (entries, bytes) = try txn.statistics(dbi)
                return DatabaseUsage(name: database.rawValue, entries: entries, bytes: bytes)
            }
        }
    }

    /// Routing profiles stored by name.
    public var profiles: StoredDocuments { StoredDocuments(store: self, database: profileDatabase, kind: "profile") }
    /// Compression plans stored by name.
    public var plans: StoredDocuments { StoredDocuments(store: self, database: planDatabase, kind: "plan") }

    // MARK: Loading

    /// The model with dense weights from the store and experts from `experts` (by default:
    /// every original expert, loaded on first use); 16-bit weights held as `precision` says.
    public func loadModel(experts source: (any ExpertSource)? = nil, precision: WeightPrecision = .stored) throws -> MoEModel {
        let description = try modelDescription()
        let tensors = try StoreTensorProvider(store: self)
        return try MoEModel(description: description, tensors: tensors,
                            experts: source ?? StoreExpertSource(store: self, precision: precision), precision: precision)
    }
}

/// What one named database occupies.
public struct DatabaseUsage: Equatable, Sendable, Codable {
    public var name: String
    public var entries: Int
    public var bytes: Int
}
