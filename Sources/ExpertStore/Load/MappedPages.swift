import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Lets go of the memory-map pages under `bytes` once their contents have been copied out
/// (a BF16 expert widened to f32), so the process's resident memory counts the copy once
/// rather than the copy plus the mapped original. Only whole pages inside `bytes` are
/// released; the data stays in the OS page cache and a later read maps it back in.
enum MappedPages {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    static func release(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        let start = (Int(bitPattern: base) + pageSize - 1) / pageSize * pageSize
        let end = (Int(bitPattern: base) + bytes.count) / pageSize * pageSize
        guard end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
        // Advice only: if the kernel declines, the pages simply stay resident.
        _ = madvise(pointer, end - start, Int32(MADV_DONTNEED))
    }
}
