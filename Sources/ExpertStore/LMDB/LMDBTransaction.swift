import CLMDB

/// One open LMDB transaction, valid only inside the closure that receives it. Byte
/// buffers returned from `get` and `forEach` point into the memory map and are valid
/// until the transaction ends.
struct LMDBTransaction {
    let handle: OpaquePointer
    let path: String

    /// The value stored under `key`, or nil.
    func get(_ database: MDB_dbi, _ key: [UInt8]) throws -> UnsafeRawBufferPointer? {
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(handle, database, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try LMDBEnvironment.check(rc, path: path, "mdb_get")
            return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
        }
    }

    func put(_ database: MDB_dbi, _ key: [UInt8], _ value: UnsafeRawBufferPointer) throws {
        try reserve(database, key, count: value.count) { target in
            if value.count > 0 { target.copyMemory(from: value) }
        }
    }

    func put(_ database: MDB_dbi, _ key: [UInt8], _ value: [UInt8]) throws {
        try value.withUnsafeBytes { try put(database, key, $0) }
    }

    /// Reserves `count` bytes for `key` (replacing any old value) and lets `fill` write
    /// them in place, sparing a copy of large records.
    func reserve(_ database: MDB_dbi, _ key: [UInt8], count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            var v = MDB_val(mv_size: count, mv_data: nil)
            try LMDBEnvironment.check(mdb_put(handle, database, &k, &v, UInt32(MDB_RESERVE)), path: path, "mdb_put")
            try fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
        }
    }

    /// Deletes `key`; false when it was not there.
    @discardableResult
    func delete(_ database: MDB_dbi, _ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { keyBytes in
            var k = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            let rc = mdb_del(handle, database, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try LMDBEnvironment.check(rc, path: path, "mdb_del")
            return true
        }
    }

    /// Walks the records in key order, starting at the first key ≥ `start` (or the
    /// beginning), until `body` returns false.
    func forEach(_ database: MDB_dbi, from start: [UInt8]? = nil,
                 _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        var cursor: OpaquePointer?
        try LMDBEnvironment.check(mdb_cursor_open(handle, database, &cursor), path: path, "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var rc: Int32
        if let start {
            // After MDB_SET_RANGE, `k` points at the found key inside the map, not at `start`.
            rc = start.withUnsafeBytes { bytes in
                k = MDB_val(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            }
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        }
        while rc == 0 {
            let keep = try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            if !keep { return }
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try LMDBEnvironment.check(rc, path: path, "mdb_cursor_get") }
    }

    /// Entries and pages of one database.
    func statistics(_ database: MDB_dbi) throws -> (entries: Int, bytes: Int) {
        var stat = MDB_stat()
        try LMDBEnvironment.check(mdb_stat(handle, database, &stat), path: path, "mdb_stat")
        let pages = stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages
        return (stat.ms_entries, pages * Int(stat.ms_psize))
    }
}
