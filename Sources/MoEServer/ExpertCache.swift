import Foundation
import MoE

/// Experts shared by the plans of a task-adaptive server (`--auto`), keyed by store record
/// (layer, expert, variant) so that plans keeping the same expert share one copy. Bounded by
/// bytes: after each load, the least recently used experts are evicted until the total fits
/// `limitBytes` again (the expert just loaded always stays, so a bound smaller than one
/// expert still serves, one expert at a time).
///
/// A forward pass holds its own reference to the experts it is running, so an evicted expert
/// is freed once the passes using it finish: memory can exceed the bound by what in-flight
/// requests touch, never by what sits idle.
public final class ExpertCache: @unchecked Sendable {
    public struct Key: Hashable, Sendable {
        public var layer: Int
        public var expert: Int
        public var variant: UInt32
    }

    public struct Statistics: Sendable, Equatable {
        public var hits: Int
        public var misses: Int
        public var evictions: Int
        public var residentBytes: Int
        public var entries: Int
        public var limitBytes: Int?
    }

    public let limitBytes: Int?
    private let lock = NSLock()
    private var entries = [Key: Entry]()
    private var clock = 0
    private var residentBytes = 0
    private var hits = 0, misses = 0, evictions = 0

    private struct Entry {
        var expert: any Expert
        var bytes: Int
        var lastUse: Int
    }

    /// `limitBytes` nil: unbounded.
    public init(limitBytes: Int?) { self.limitBytes = limitBytes }

    /// The expert at `key`, loaded with `load` on a miss. Loads run outside the lock, so two
    /// requests missing different experts load them at the same time.
    public func expert(_ key: Key, load: () throws -> any Expert) throws -> any Expert {
        let cached: (any Expert)? = lock.withLock {
            clock += 1
            guard let found = entries[key] else { return nil }
            entries[key]!.lastUse = clock
            hits += 1
            return found.expert
        }
        if let cached { return cached }
        let loaded = try load()
        return lock.withLock {
            // Another request may have loaded it meanwhile: keep the first, count one miss.
            if let existing = entries[key] {
                hits += 1
                return existing.expert
            }
            misses += 1
            clock += 1
            entries[key] = Entry(expert: loaded, bytes: loaded.residentBytes, lastUse: clock)
            residentBytes += loaded.residentBytes
            evict(keeping: key)
            return loaded
        }
    }

    public var statistics: Statistics {
        lock.withLock {
            Statistics(hits: hits, misses: misses, evictions: evictions, residentBytes: residentBytes, entries: entries.count, limitBytes: limitBytes)
        }
    }

    /// Whether `key` is cached now (does not count as a use).
    public func contains(_ key: Key) -> Bool { lock.withLock { entries[key] != nil } }

    /// Drops least recently used entries until the total fits. Caller holds the lock.
    /// A linear scan per eviction: evictions follow a store read and widening of an expert's
    /// weights, which cost far more than scanning even tens of thousands of entries.
    private func evict(keeping newest: Key) {
        guard let limitBytes else { return }
        while residentBytes > limitBytes, entries.count > 1 {
            guard let oldest = entries.filter({ $0.key != newest }).min(by: { $0.value.lastUse < $1.value.lastUse }) else { return }
            residentBytes -= oldest.value.bytes
            entries[oldest.key] = nil
            evictions += 1
        }
    }
}
