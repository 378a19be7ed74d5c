import CLMDB
import Foundation
import Synchronization

/// An LMDB environment: one directory holding `data.mdb` and `lock.mdb`, with named
/// databases inside. This file and `LMDBTransaction.swift` are the only places that
/// call LMDB.
///
/// Writable environments are opened with `MDB_NOMETASYNC`: each commit flushes its data
/// pages but not the meta page, so a bulk import pays one flush per transaction instead of
/// two, and a system crash can only roll back the last commit (LMDB keeps its integrity).
/// `MDB_NOSYNC` would skip the data flush too, but then a power loss may corrupt the file,
/// and it bought nothing measurable here (store-bench import of 768 MiB of experts: 3.77 s
/// with it, 3.78 s without; writing the pages dominates, not flushing them).
/// A killed process loses nothing that was committed either way: commits go through the OS
/// page cache. Every environment uses `MDB_NOTLS`, so a read transaction is not tied to the
/// thread that began it.
final class LMDBEnvironment: @unchecked Sendable {
    let path: String
    let readOnly: Bool
    let handle: OpaquePointer
    /// Read transactions live in this process. Its lock is held for every change of the map
    /// size: LMDB remaps the file when the map size changes, which would pull the pages out
    /// from under any read transaction of this process (and the zero-copy experts pointing
    /// into them), so the map is only ever resized while no reader is live here.
    private let liveReaders = Mutex(0)

    static let maxDatabases: UInt32 = 8
    static let dataFile = "data.mdb"

    /// Opens the environment in `directory`; `create` (writable only) makes it when it does
    /// not exist. Only `import` creates a store: any other command that opens a path where
    /// there is none fails without leaving an empty store behind. `mapSize` is the initial
    /// map size for a writer; LMDB never maps less than the data already committed.
    init(directory: URL, readOnly: Bool, create: Bool = false, mapSize: Int? = nil) throws {
        path = directory.path
        self.readOnly = readOnly
        let fm = FileManager.default
        let dataURL = directory.appendingPathComponent(Self.dataFile)
        if readOnly || !create {
            guard fm.fileExists(atPath: dataURL.path) else {
                throw StoreError.notAStore(path: path, reason: "there is no \(Self.dataFile) in it; create the store with `moekit import --store \(path)`")
            }
        } else {
            do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
                throw StoreError.notAStore(path: path, reason: "cannot create the directory: \(error.localizedDescription)")
            }
        }
        // LMDB reads its two meta pages through the memory map; a file too short to hold
        // them would fault there (SIGBUS) instead of returning an error.
        let existingSize = Self.fileSize(dataURL.path)
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        if let existingSize, existingSize > 0, existingSize < 2 * pageSize {
            throw StoreError.truncated(path: path, expectedBytes: 2 * pageSize, actualBytes: existingSize)
        }
        // An empty data file is an import killed before its first commit: nothing is there.
        // (Opened read-only, LMDB would have to initialise it and its lock file, and fails
        // with a bare EBADF.)
        if readOnly, existingSize == 0 {
            throw StoreError.notAStore(path: path, reason: "\(Self.dataFile) is empty: an import was stopped before it committed anything; run `moekit import --store \(path)`")
        }
        var env: OpaquePointer?
        try Self.check(mdb_env_create(&env), path: path, "mdb_env_create")
        guard let env else { throw StoreError.lmdb(path: path, operation: "mdb_env_create", code: -1, message: "no handle") }
        // From here on every property is set, so a throw runs deinit, which closes `env`.
        handle = env
        try Self.check(mdb_env_set_maxdbs(env, Self.maxDatabases), path: path, "mdb_env_set_maxdbs")
        // The map is address space, not memory or disk (without MDB_WRITEMAP the file only
        // grows as pages are written), so reserve plenty: a store that grows while this
        // process reads it then rarely outgrows the map (see `beginTransaction`).
        let generous = (existingSize ?? 0) * 2 + (1 << 30)
        try Self.check(mdb_env_set_mapsize(env, Self.roundedMapSize(readOnly ? generous : mapSize ?? generous)), path: path, "mdb_env_set_mapsize")
        var flags = UInt32(MDB_NOTLS)
        flags |= readOnly ? UInt32(MDB_RDONLY) : UInt32(MDB_NOMETASYNC)
        try Self.check(mdb_env_open(env, path, flags, 0o644), path: path, "mdb_env_open")
        // Every page the metadata names must be in the file, or reading it would fault.
        let info = self.info
        let needed = (info.lastPage + 1) * info.pageSize
        if let actual = Self.fileSize(dataURL.path), actual < needed {
            throw StoreError.truncated(path: path, expectedBytes: needed, actualBytes: actual)
        }
    }

    deinit { mdb_env_close(handle) }

    /// The environment for `directory`, shared with any other user in this process. LMDB
    /// must not have one environment open twice in a process: closing the second copy
    /// would drop the first one's file locks. A writer is refused while the store is open
    /// read-only here; a reader gets the open writable environment.
    static func open(directory: URL, readOnly: Bool, create: Bool = false, mapSize: Int? = nil) throws -> LMDBEnvironment {
        let key = directory.standardizedFileURL.resolvingSymlinksInPath().path
        return try registry.withLock { open in
            if let live = open[key]?.environment {
                guard readOnly || !live.readOnly else { throw StoreError.openReadOnly(path: directory.path) }
                return live
            }
            let environment = try LMDBEnvironment(directory: directory, readOnly: readOnly, create: create, mapSize: mapSize)
            open[key] = WeakEnvironment(environment: environment)
            return environment
        }
    }

    private static let registry = Registry()

    private struct WeakEnvironment {
        weak var environment: LMDBEnvironment?
    }

    private final class Registry: Sendable {
        private let open = Mutex([String: WeakEnvironment]())

        func withLock<T>(_ body: (inout [String: WeakEnvironment]) throws -> T) throws -> T {
            try open.withLock { open in
                open = open.filter { $0.value.environment != nil }
                return try body(&open)
            }
        }
    }

    struct Info {
        var mapSize: Int
        var lastPage: Int
        var pageSize: Int
    }

    var info: Info {
        var envInfo = MDB_envinfo()
        mdb_env_info(handle, &envInfo)
        var stat = MDB_stat()
        mdb_env_stat(handle, &stat)
        return Info(mapSize: envInfo.me_mapsize, lastPage: envInfo.me_last_pgno, pageSize: Int(stat.ms_psize))
    }

    /// Opens the named database, creating it when `create` (which needs a writable
    /// environment). Returns nil when it does not exist and `create` is false; then
    /// nothing is written.
    func openDatabase(_ name: String, create: Bool) throws -> MDB_dbi? {
        var dbi: MDB_dbi = 0
        var missing = false
        try withTransaction(readOnly: !create) { txn in
            let rc = mdb_dbi_open(txn.handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
            if rc == MDB_NOTFOUND { missing = true; return }
            try Self.check(rc, path: path, "mdb_dbi_open(\(name))")
        }
        return missing ? nil : dbi
    }

    /// Runs `body` in a short read transaction.
    func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        try withTransaction(readOnly: true, body)
    }

    /// Runs `body` in a write transaction and commits it. When the map fills up, the
    /// transaction is aborted, the map doubled, and `body` run again from the start, so
    /// `body` must only write (it must not count on having run once).
    func write<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        guard !readOnly else { throw StoreError.readOnly(path: path, operation: "write") }
        while true {
            do {
                return try withTransaction(readOnly: false, body)
            } catch let StoreError.lmdb(_, _, code, _) where code == MDB_MAP_FULL {
                try growMap()
            }
        }
    }

    /// Flushes everything committed so far to disk.
    func sync() throws {
        try Self.check(mdb_env_sync(handle, 1), path: path, "mdb_env_sync")
    }

    /// Begins a read transaction that stays open until the snapshot is released; the bytes
    /// it returns stay valid (and unchanged) that long.
    func snapshot() throws -> LMDBSnapshot { try LMDBSnapshot(environment: self) }

    /// Begins a transaction. Read transactions are counted as live readers until
    /// `endReadTransaction`; they begin holding `liveReaders`' lock so the map cannot change meanwhile.
    func beginTransaction(readOnly: Bool) throws -> OpaquePointer {
        guard readOnly else {
            return try begin(flags: 0) { try liveReaders.withLock { try adoptGrownMap(liveReaders: $0) } }
        }
        return try liveReaders.withLock { live in
            let txn = try begin(flags: UInt32(MDB_RDONLY)) { try adoptGrownMap(liveReaders: live) }
            live += 1
            return txn
        }
    }

    /// `mdb_txn_begin`, once more after `onResized` when another process grew the map.
    private func begin(flags: UInt32, onResized: () throws -> Void) throws -> OpaquePointer {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(handle, nil, flags, &txn)
        if rc == MDB_MAP_RESIZED {
            try onResized()
            rc = mdb_txn_begin(handle, nil, flags, &txn)
        }
        try Self.check(rc, path: path, "mdb_txn_begin")
        guard let txn else { throw StoreError.lmdb(path: path, operation: "mdb_txn_begin", code: -1, message: "no handle") }
        return txn
    }

    /// Another process grew the store past this process's map: adopt its size, which is only
    /// safe while nothing here reads through the current map. Call holding `liveReaders`' lock.
    private func adoptGrownMap(liveReaders: Int) throws {
        guard liveReaders == 0 else { throw StoreError.mapInUse(path: path) }
        try Self.check(mdb_env_set_mapsize(handle, 0), path: path, "mdb_env_set_mapsize")
    }

    /// Ends a read transaction begun by `beginTransaction(readOnly: true)`.
    func endReadTransaction(_ txn: OpaquePointer, commit: Bool) throws {
        let rc = commit ? mdb_txn_commit(txn) : { mdb_txn_abort(txn); return 0 }()
        liveReaders.withLock { $0 -= 1 }
        try Self.check(rc, path: path, "mdb_txn_commit")
    }

    private func withTransaction<T>(readOnly: Bool, _ body: (LMDBTransaction) throws -> T) throws -> T {
        let txn = try beginTransaction(readOnly: readOnly)
        let result: T
        do {
            result = try body(LMDBTransaction(handle: txn, path: path))
        } catch {
            if readOnly { try? endReadTransaction(txn, commit: false) } else { mdb_txn_abort(txn) }
            throw error
        }
        // A read transaction is committed too: that is what keeps database handles opened in it.
        if readOnly { try endReadTransaction(txn, commit: true) } else { try Self.check(mdb_txn_commit(txn), path: path, "mdb_txn_commit") }
        return result
    }

    private func growMap() throws {
        try liveReaders.withLock { live in
            guard live == 0 else { throw StoreError.mapInUse(path: path) }
            let next = Self.roundedMapSize(info.mapSize * 2)
            try Self.check(mdb_env_set_mapsize(handle, next), path: path, "mdb_env_set_mapsize(\(next))")
        }
    }

    /// Map sizes are whole MiB, at least 1 MiB.
    static func roundedMapSize(_ bytes: Int) -> Int {
        let mib = 1 << 20
        return max(mib, (bytes + mib - 1) / mib * mib)
    }

    static func fileSize(_ path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    static func check(_ rc: Int32, path: String, _ operation: String) throws {
        guard rc != 0 else { return }
        throw StoreError.lmdb(path: path, operation: operation, code: rc, message: String(cString: mdb_strerror(rc)))
    }
}

/// A read transaction held open for as long as this object lives. LMDB allows a
/// transaction to be used by one thread at a time, so every use goes through `lock`;
/// the bytes handed out stay valid until the snapshot is released and may be read by
/// any number of threads at once.
///
/// It stays `@unchecked Sendable` with a `Mutex<Void>`: the C transaction handle is not
/// `Sendable`, so a `Mutex` cannot hold it, and the lock is what makes sharing it safe.
final class LMDBSnapshot: @unchecked Sendable {
    let environment: LMDBEnvironment
    private let handle: OpaquePointer
    private let lock = Mutex(())

    fileprivate init(environment: LMDBEnvironment) throws {
        self.environment = environment
        handle = try environment.beginTransaction(readOnly: true)
    }

    deinit { try? environment.endReadTransaction(handle, commit: false) }

    func withTransaction<T>(_ body: (LMDBTransaction) throws -> T) rethrows -> T {
        try lock.withLock { _ in try body(LMDBTransaction(handle: handle, path: environment.path)) }
    }
}
