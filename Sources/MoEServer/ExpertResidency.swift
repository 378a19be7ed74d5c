import MoE

/// Whether the experts are loaded at start or come through the LRU expert cache, and why.
/// Loading everything at start is fastest, but a plan whose experts do not fit the memory
/// this process may use (its cgroup limit, or what the machine has available) would be
/// killed part way; through the cache it still runs, reading misses from the store.
public struct ExpertResidency: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// Every expert of every plan loaded at start.
        case resident
        /// Experts loaded on first use into an `ExpertCache` bounded by `limitBytes` (nil: unbounded).
        case cached(limitBytes: Int?)
    }

    public var mode: Mode
    public var footprint: ExpertFootprint
    public var budget: AvailableMemory.Budget
    /// The decision and its reason in one line, e.g. "experts through an LRU cache of 812 MiB
    /// (plan needs 4.6 GiB, 2.1 GiB available: cgroup v1 limit …)".
    public var summary: String

    /// Room kept beside the weights for the KV cache, activations, the tokenizer and the
    /// allocator's slack: this fraction of the weights plus `marginBytes`.
    public static let marginFraction = 0.10
    public static let marginBytes = 64 << 20

    /// The decision for `footprint` within `budget`. With `requestedLimit` (`--max-expert-memory`)
    /// the experts go through a cache of exactly that bound. Otherwise they are loaded at start
    /// when weights plus margin fit the budget, and else go through a cache sized to what is
    /// left after the dense weights and the margin, at least `footprint.minimumCacheBytes`.
    /// `onDemand` (`serve --auto`, which loads nothing at start) makes the fitting case an
    /// unbounded cache instead of loading at start.
    public static func decide(footprint: ExpertFootprint, requestedLimit: Int?, budget: AvailableMemory.Budget,
                              onDemand: Bool = false) -> ExpertResidency {
        let needs = "\(footprint.planCount == 1 ? "plan needs" : "plans need") \(ByteCount.text(footprint.expertBytes))"
        let available = "\(ByteCount.text(budget.bytes)) available: \(budget.source)"
        func result(_ mode: Mode, _ summary: String) -> ExpertResidency {
            ExpertResidency(mode: mode, footprint: footprint, budget: budget, summary: summary)
        }
        if let requestedLimit {
            return result(.cached(limitBytes: requestedLimit),
                          "experts through an LRU cache of \(ByteCount.text(requestedLimit)) (--max-expert-memory; \(needs), \(available))")
        }
        let weights = footprint.denseBytes + footprint.expertBytes
        if weights + margin(weights) <= budget.bytes {
            if onDemand { return result(.cached(limitBytes: nil), "experts on demand, unbounded (\(needs), \(available))") }
            return result(.resident, "all \(ByteCount.text(footprint.expertBytes)) of experts resident (\(available))")
        }
        let room = cacheRoom(denseBytes: footprint.denseBytes, budget: budget.bytes)
        let limit = max(room, footprint.minimumCacheBytes)
        let floor = limit > room ? "; raised to one layer's top-k experts" : ""
        return result(.cached(limitBytes: limit), "experts through an LRU cache of \(ByteCount.text(limit)) (\(needs), \(available)\(floor))")
    }

    static func margin(_ weights: Int) -> Int { Int(Double(weights) * marginFraction) + marginBytes }

    /// The largest cache with dense + cache + margin(dense + cache) within `budget`.
    static func cacheRoom(denseBytes: Int, budget: Int) -> Int {
        max(0, Int(Double(budget - marginBytes) / (1 + marginFraction)) - denseBytes)
    }
}
