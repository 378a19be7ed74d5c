import CBLAS
import CKernels

/// The threads that run the forward pass: one persistent pool (`thread_pool.h`) shared by
/// every product, which splits each large product by output rows. Workers sleep when idle,
/// so nothing spins between requests or beside OpenBLAS.
///
/// Until `configure` is called, the pool has one thread per online processor and OpenBLAS
/// keeps its own threads (offline compression leans on its threaded dgemm). `configure`,
/// called by the commands that run the model, makes OpenBLAS single-threaded: from then on
/// the pool also splits the sgemm products, and the two never compete for the same cores.
public enum ComputePool {
    /// Threads that run tasks, the calling thread included.
    public static var threads: Int { Int(moe_pool_threads()) }

    /// Uses `threads` threads for every product, OpenBLAS's included (as one per call).
    public static func configure(threads: Int) {
        precondition(threads >= 1, "thread count must be at least 1")
        moe_pool_set_threads(threads)
        openblas_set_num_threads(1)
    }

    /// Runs `body` as under `configure(threads:)`, then restores the pool's and OpenBLAS's
    /// thread counts (tests compare results across thread counts in one process).
    public static func withThreads<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
        let (pool, blas) = (self.threads, openblas_get_num_threads())
        configure(threads: threads)
        defer {
            moe_pool_set_threads(pool)
            openblas_set_num_threads(blas)
        }
        return try body()
    }

    /// Whether sgemm should be split by the pool: only when OpenBLAS runs one thread per call,
    /// so a product is threaded once, by one of the two.
    public static var splitsBLAS: Bool { openblas_get_num_threads() == 1 && threads > 1 }

    /// Products with fewer multiply-adds than this run on the calling thread: below it the
    /// hand-off to the workers (a few microseconds) costs more than it saves.
    public static let parallelWork = 1 << 18

    /// How many parts a product of `work` multiply-adds over `rows` output rows splits into:
    /// up to four per thread for a large product (threads take parts as they come, so a
    /// thread the shared machine pauses leaves its share to the others rather than holding
    /// everyone up), never parts of fewer than 16 rows.
    public static func parts(work: Int, rows: Int) -> Int {
        guard work >= parallelWork else { return 1 }
        return max(1, min(threads * min(4, work / parallelWork), rows / 16))
    }

    /// Calls `body(i)` once for each `i < count`, on the pool's threads, and returns when all
    /// have returned. `body` runs concurrently with itself: each call must write only its own
    /// part of any shared output. Calls from inside a task run inline.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        guard count > 1 else {
            if count == 1 { body(0) }
            return
        }
        withoutActuallyEscaping(body) { task in
            var task = task
            withUnsafeMutablePointer(to: &task) { pointer in
                moe_pool_run(count, { context, index in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                }, pointer)
            }
        }
    }

    /// For products that expand a tile of weight rows into an f32 scratch and hand it to sgemm
    /// (widened BF16, dequantized codes): cuts `rows` into tiles of at most `maximumRows`,
    /// at least one per part when the pool splits sgemm, and deals them out to the parts.
    /// `body(scratch, tile)` runs for each tile, in order within a part, with a scratch of
    /// `tileRows · columns` floats that each part allocates once.
    public static func forEachTile(rows: Int, columns: Int, maximumRows: Int,
                                   _ body: (UnsafeMutablePointer<Float>, Range<Int>) -> Void) {
        let parts = splitsBLAS ? min(threads, max(1, rows / 16)) : 1
        let tiles = max(parts, (rows + maximumRows - 1) / maximumRows)
        let tileRows = (rows + tiles - 1) / tiles
        forEach(parts) { part in
            var scratch = [Float](repeating: 0, count: tileRows * columns)
            scratch.withUnsafeMutableBufferPointer { s in
                for start in stride(from: part * tileRows, to: rows, by: parts * tileRows) {
                    body(s.baseAddress!, start..<min(rows, start + tileRows))
                }
            }
        }
    }

    /// Splits `rows` output rows into `parts` contiguous ranges and runs `body` on each.
    public static func forEachRange(rows: Int, parts: Int, _ body: (Range<Int>) -> Void) {
        let chunk = (rows + parts - 1) / max(parts, 1)
        forEach(parts) { part in
            let start = part * chunk, end = min(rows, start + chunk)
            if start < end { body(start..<end) }
        }
    }
}
