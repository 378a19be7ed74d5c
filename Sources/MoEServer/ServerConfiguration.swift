import MoE

/// What `moekit serve` was asked to do.
public struct ServerConfiguration: Sendable, Equatable {
    /// Plans to serve, by name. With one plan and no `auto`, requests may omit `model`.
    public var plans: [String]
    /// Choose the plan per request by routing signature (PreMoe TAER) and load experts on
    /// demand into a bounded cache, instead of loading every plan's experts at start.
    public var auto: Bool
    /// Loopback unless told otherwise: the server has no authentication.
    public var host: String
    /// 0 picks a free port (reported by `RunningServer.port`).
    public var port: Int
    /// Bound on resident expert bytes: the experts then come through an LRU cache of this size
    /// (with or without `auto`). nil: loaded at start when they fit `memoryBudget`, else
    /// through a cache sized to it (see `ExpertResidency`).
    public var maxExpertMemory: Int?
    /// Requests computed at once, sharing each forward pass of their plan; the rest wait in FIFO order.
    public var maxConcurrency: Int
    /// Larger request bodies get 413.
    public var maxBodyBytes: Int
    /// How original BF16/F16 experts are held: kept as stored (half the memory of f32, read
    /// directly by the half-precision kernels) unless told to widen them.
    public var expertPrecision: ExpertPrecision
    /// The memory the experts must fit; nil: `AvailableMemory.current()` when the engine starts.
    public var memoryBudget: AvailableMemory.Budget?

    public init(plans: [String], auto: Bool = false, host: String = "127.0.0.1", port: Int = 8080,
                maxExpertMemory: Int? = nil, maxConcurrency: Int = 8, maxBodyBytes: Int = 1 << 20,
                expertPrecision: ExpertPrecision = .stored, memoryBudget: AvailableMemory.Budget? = nil) {
        self.plans = plans
        self.auto = auto
        self.host = host
        self.port = port
        self.maxExpertMemory = maxExpertMemory
        self.maxConcurrency = maxConcurrency
        self.maxBodyBytes = maxBodyBytes
        self.expertPrecision = expertPrecision
        self.memoryBudget = memoryBudget
    }
}
