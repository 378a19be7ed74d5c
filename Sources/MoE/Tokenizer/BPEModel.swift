import Foundation
import Synchronization

/// Byte-level BPE by merge rank, as HF's `BPE` model: a word starts as one symbol per byte,
/// and the adjacent pair with the lowest merge rank (leftmost among equals) is merged until no
/// pair has a merge. Merges are resolved to ids up front; results are cached per word.
final class BPEModel: Sendable {
    // Everything but the cache is immutable after init; the cache lives in a `Mutex`, so the
    // compiler checks that it is only touched under the lock.

    /// Id of the single-byte token of each byte, -1 when the vocabulary lacks it.
    private let byteIDs: [Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    private let unknownID: Int32?
    private let fuseUnknown: Bool
    /// With `ignore_merges`: the id of every vocabulary token, by its bytes.
    private let wholeWords: [[UInt8]: Int]?

    private let cache = Mutex(BPEWordCache())
    /// Longer words are not cached (as in HF).
    private static let cacheableLength = 256

    /// - Parameters:
    ///   - vocabulary: token (byte-level string) → id.
    ///   - merges: pairs of tokens, in rank order.
    /// - Throws: `BPEModelError` for merges that refer to tokens missing from the vocabulary.
    init(vocabulary: [String: Int], merges: [(String, String)], unknownToken: String?, fuseUnknown: Bool, ignoreMerges: Bool) throws {
        var byteIDs = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            if let id = vocabulary[String(ByteLevel.byteToScalar[byte])] { byteIDs[byte] = Int32(id) }
        }
        self.byteIDs = byteIDs
        var table = [UInt64: UInt64](minimumCapacity: merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let a = vocabulary[left] else { throw BPEModelError.mergeTokenMissing(rank: rank, token: left) }
            guard let b = vocabulary[right] else { throw BPEModelError.mergeTokenMissing(rank: rank, token: right) }
            guard let merged = vocabulary[left + right] else { throw BPEModelError.mergeTokenMissing(rank: rank, token: left + right) }
            // A repeated pair keeps its last rank, as HF's map does.
            table[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))] = UInt64(UInt32(rank)) << 32 | UInt64(UInt32(merged))
        }
        self.merges = table
        if let unknownToken {
            guard let id = vocabulary[unknownToken] else { throw BPEModelError.unknownTokenMissing(unknownToken) }
            unknownID = Int32(id)
        } else {
            unknownID = nil
        }
        self.fuseUnknown = fuseUnknown
        if ignoreMerges {
            var whole = [[UInt8]: Int](minimumCapacity: vocabulary.count)
            for (token, id) in vocabulary { if let bytes = ByteLevel.bytes(token) { whole[bytes] = id } }
            wholeWords = whole
        } else {
            wholeWords = nil
        }
    }

    /// Appends the ids of one pre-tokenized word (raw UTF-8 bytes, not yet byte-level mapped).
    func encode(_ word: ArraySlice<UInt8>, into ids: inout [Int]) {
        guard !word.isEmpty else { return }
        if let wholeWords, let id = wholeWords[Array(word)] {
            ids.append(id)
            return
        }
        if word.count == 1 {
            let id = byteIDs[Int(word.first!)]
            if id >= 0 { ids.append(Int(id)) } else if let unknownID { ids.append(Int(unknownID)) }
            return
        }
        let cacheable = word.count < Self.cacheableLength
        let hash = cacheable ? BPEWordCache.hash(word) : 0
        if cacheable {
            if cache.withLock({ $0.lookup(word, hash: hash, into: &ids) }) { return }
        }
        let merged = merge(word)
        for id in merged { ids.append(Int(id)) }
        if cacheable {
            cache.withLock { $0.insert(word, hash: hash, ids: merged) }
        }
    }

    private struct Symbol {
        var id: Int32
        var previous: Int32
        var next: Int32
        var length: Int32  // bytes; 0 once merged into its left neighbour
    }

    /// HF's `Word::merge_all`: a priority queue of candidate merges ordered by (rank, position);
    /// stale entries (whose pair has changed) are skipped when popped.
    private func merge(_ word: ArraySlice<UInt8>) -> [Int32] {
        var symbols = [Symbol]()
        symbols.reserveCapacity(word.count)
        var pendingUnknown: Int32 = 0  // length of a fused run of unknown bytes
        func appendSymbol(_ id: Int32, _ length: Int32) {
            let index = Int32(symbols.count)
            if index > 0 { symbols[Int(index) - 1].next = index }
            symbols.append(Symbol(id: id, previous: index - 1, next: -1, length: length))
        }
        for byte in word {
            let id = byteIDs[Int(byte)]
            if id >= 0 {
                if pendingUnknown > 0, let unknownID { appendSymbol(unknownID, pendingUnknown); pendingUnknown = 0 }
                appendSymbol(id, 1)
            } else if let unknownID {
                if fuseUnknown {
                    pendingUnknown += 1
                } else {
                    appendSymbol(unknownID, 1)
                }
            }
            // Without an unknown token HF drops the byte.
        }
        if pendingUnknown > 0, let unknownID { appendSymbol(unknownID, pendingUnknown) }
        guard symbols.count > 1 else { return symbols.map(\.id) }

        var queue = BPEMergeQueue()
        for i in 0..<(symbols.count - 1) {
            if let entry = merges[Self.pairKey(symbols[i].id, symbols[i + 1].id)] {
                queue.push(rank: UInt32(entry >> 32), position: UInt32(i), newID: Int32(truncatingIfNeeded: entry))
            }
        }
        while let top = queue.pop() {
            let position = Int(top.position)
            let symbol = symbols[position]
            if symbol.length == 0 || symbol.next == -1 { continue }
            let nextPosition = Int(symbol.next)
            let right = symbols[nextPosition]
            guard let current = merges[Self.pairKey(symbol.id, right.id)], Int32(truncatingIfNeeded: current) == top.newID else {
                continue
            }
            symbols[position].id = top.newID
            symbols[position].length += right.length
            symbols[position].next = right.next
            symbols[nextPosition].length = 0
            if right.next >= 0 { symbols[Int(right.next)].previous = Int32(position) }

            let merged = symbols[position]
            if merged.previous >= 0 {
                let previous = symbols[Int(merged.previous)]
                if let entry = merges[Self.pairKey(previous.id, merged.id)] {
                    queue.push(rank: UInt32(entry >> 32), position: UInt32(merged.previous), newID: Int32(truncatingIfNeeded: entry))
                }
            }
            if merged.next >= 0 {
                let next = symbols[Int(merged.next)]
                if let entry = merges[Self.pairKey(merged.id, next.id)] {
                    queue.push(rank: UInt32(entry >> 32), position: UInt32(position), newID: Int32(truncatingIfNeeded: entry))
                }
            }
        }
        var result = [Int32]()
        result.reserveCapacity(symbols.count)
        for symbol in symbols where symbol.length != 0 { result.append(symbol.id) }
        return result
    }

    @inline(__always) private static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }
}

enum BPEModelError: Error {
    case mergeTokenMissing(rank: Int, token: String)
    case unknownTokenMissing(String)
}

/// A binary min-heap of merge candidates keyed by (rank, position).
struct BPEMergeQueue {
    private var keys: [UInt64] = []
    private var newIDs: [Int32] = []

    mutating func push(rank: UInt32, position: UInt32, newID: Int32) {
        var i = keys.count
        keys.append(UInt64(rank) << 32 | UInt64(position))
        newIDs.append(newID)
        while i > 0 {
            let parent = (i - 1) / 2
            guard keys[i] < keys[parent] else { break }
            keys.swapAt(i, parent)
            newIDs.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (position: UInt32, newID: Int32)? {
        guard let first = keys.first else { return nil }
        let result = (UInt32(truncatingIfNeeded: first), newIDs[0])
        let lastKey = keys.removeLast()
        let lastID = newIDs.removeLast()
        if !keys.isEmpty {
            keys[0] = lastKey
            newIDs[0] = lastID
            var i = 0
            while true {
                let left = 2 * i + 1
                guard left < keys.count else { break }
                var smallest = left
                if left + 1 < keys.count && keys[left + 1] < keys[left] { smallest = left + 1 }
                guard keys[smallest] < keys[i] else { break }
                keys.swapAt(i, smallest)
                newIDs.swapAt(i, smallest)
                i = smallest
            }
        }
        return result
    }
}

/// The per-word cache of `BPEModel`: an open-addressing hash table from a word's bytes to its
/// ids, with keys and values stored in two flat buffers (no allocation per lookup). When it is
/// full it starts over.
struct BPEWordCache {
    private static let slotCount = 1 << 17
    private static let maximumEntries = slotCount / 2
    private static let maximumKeyBytes = 1 << 22

    private struct Entry {
        var hash: UInt64
        var keyStart: Int32
        var keyLength: Int32
        var valueStart: Int32
        var valueLength: Int32
    }
    private var slots = [Int32](repeating: -1, count: BPEWordCache.slotCount)
    private var entries = [Entry]()
    private var keys = [UInt8]()
    private var values = [Int32]()

    /// FNV-1a, 64 bits.
    @inline(__always) static func hash(_ word: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in word { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }

    /// Appends the cached ids of `word` to `ids`; false when it is not cached.
    func lookup(_ word: ArraySlice<UInt8>, hash: UInt64, into ids: inout [Int]) -> Bool {
        let mask = Self.slotCount - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        return slots.withUnsafeBufferPointer { slots in
            entries.withUnsafeBufferPointer { entries in
                keys.withUnsafeBufferPointer { keys in
                    word.withUnsafeBufferPointer { word in
                        while true {
                            let index = slots[slot]
                            if index < 0 { return false }
                            let entry = entries[Int(index)]
                            if entry.hash == hash && Int(entry.keyLength) == word.count
                                && memcmp(keys.baseAddress! + Int(entry.keyStart), word.baseAddress!, word.count) == 0 {
                                values.withUnsafeBufferPointer { values in
                                    for k in Int(entry.valueStart)..<Int(entry.valueStart + entry.valueLength) { ids.append(Int(values[k])) }
                                }
                                return true
                            }
                            slot = (slot + 1) & mask
                        }
                    }
                }
            }
        }
    }

    mutating func insert(_ word: ArraySlice<UInt8>, hash: UInt64, ids: [Int32]) {
        if entries.count >= Self.maximumEntries || keys.count + word.count > Self.maximumKeyBytes {
            for i in slots.indices { slots[i] = -1 }
            entries.removeAll(keepingCapacity: true)
            keys.removeAll(keepingCapacity: true)
            values.removeAll(keepingCapacity: true)
        }
        let mask = Self.slotCount - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] >= 0 {
            let entry = entries[Int(slots[slot])]
            if entry.hash == hash && Int(entry.keyLength) == word.count
                && keys[Int(entry.keyStart)..<Int(entry.keyStart + entry.keyLength)].elementsEqual(word) {
                return  // another thread got there first
            }
            slot = (slot + 1) & mask
        }
        slots[slot] = Int32(entries.count)
        entries.append(Entry(hash: hash, keyStart: Int32(keys.count), keyLength: Int32(word.count),
                             valueStart: Int32(values.count), valueLength: Int32(ids.count)))
        keys.append(contentsOf: word)
        values.append(contentsOf: ids)
    }
}
