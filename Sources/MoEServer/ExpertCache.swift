import Foundation
import MoE
import Synchronization

/// Experts shared by the plans a server or `moekit generate` runs through it, keyed by store
/// record (layer, expert, variant) so that plans keeping the same expert share one copy.
/// Bounded by bytes: after each load, the least recently used experts are evicted until the
/// total fits `limitBytes` again (the expert just loaded always stays, so a bound smaller
/// than one expert still serves, one expert at a time).
///
/// A forward pass holds its own reference to the experts it is running, so an evicted expert
/// is freed once the passes using it finish: memory can exceed the bound by what in-flight
/// requests touch, never by what sits idle.
public final class ExpertCache: Sendable {
    public struct Key: Hashable, Sendable {
        public var layer: Int
        public var expert: Int
        public var variant: UInt32

        public init(layer: Int, expert: Int, variant: UInt32) {
            self.layer = layer
            self.expert = expert
            self.variant = variant
        }
    }

    public struct Statistics: Sendable, Equatable {
        public var hits: Int
        public var misses: Int
        public var evictions: Int
        public var residentBytes: Int
        public var entries: Int
        public var limitBytes: Int?

        /// Hits over look-ups; nil before the first look-up.
        public var hitRate: Double? { hits + misses == 0 ? nil : Double(hits) / Double(hits + misses) }
    }

    private struct Entry {
        var expert: any Expert
        var bytes: Int
        var lastUse: Int
    }

    /// Everything the mutex guards.
    private struct State {
        var entries = [Key: Entry]()
        var clock = 0
        var residentBytes = 0
        var hits = 0, misses = 0, evictions = 0

        /// Drops least recently used entries until the total fits `limit`, never `newest`.
        /// A linear scan per eviction: evictions follow a store read and widening of an
        /// expert's weights, which cost far more than scanning even tens of thousands of entries.
        mutating func evict(toFit limit: Int, keeping newest: Key) {
            while residentBytes > limit, entries.count > 1 {
                guard let oldest = entries.filter({ $0.key != newest }).min(by: { $0.value.lastUse < $1.value.lastUse }) else { return }
                residentBytes -= oldest.value.bytes
                entries[oldest.key] = nil
                evictions += 1
            }
        }
    }

    public let limitBytes: Int?
    private let state = Mutex(State())

    /// `limitBytes` nil: unbounded.
    public init(limitBytes: Int?) { self.limitBytes = limitBytes }

    /// The expert at `key`, loaded with `load` on a miss. Loads run outside the lock, so two
    /// requests missing different experts load them at the same time.
    public func expert(_ key: Key, load: () throws -> any Expert) throws -> any Expert {
        let cached: (any Expert)? = state.withLock { state in
            state.clock += 1
            guard let found = state.entries[key] else { return nil }
            state.entries[key]!.lastUse = state.clock
            state.hits += 1
            return found.expert
        }
        if let cached { return cached }
        let loaded = try load()
        let limitBytes = self.limitBytes
        return state.withLock { state in
            // Another request loaded it meanwhile and counted the miss: keep its copy; this look-up is a hit.
            if let existing = state.entries[key] {
                state.hits += 1
                return existing.expert
            }
            state.misses += 1
            state.clock += 1
            state.entries[key] = Entry(expert: loaded, bytes: loaded.residentBytes, lastUse: state.clock)
            state.residentBytes += loaded.residentBytes
            if let limitBytes { state.evict(toFit: limitBytes, keeping: key) }
            return loaded
        }
    }

    public var statistics: Statistics {
        state.withLock { state in
            Statistics(hits: state.hits, misses: state.misses, evictions: state.evictions, residentBytes: state.residentBytes,
                       entries: state.entries.count, limitBytes: limitBytes)
        }
    }

    /// Whether `key` is cached now (does not count as a use).
    public func contains(_ key: Key) -> Bool { state.withLock { $0.entries[key] != nil } }
}
