import MoE

/// What `moekit serve` was asked to do.
public struct ServerConfiguration: Sendable, Equatable {
    /// Plans to serve, by name. With one plan and no `auto`, requests may omit `model`.
    public var plans: [String]
    /// Choose the plan per request by routing signature (PreMoe TAER) and load experts on
    /// demand into a bounded cache, instead of loading every plan's experts at start.
    public var auto: Bool
    /// Loopback unless told otherwise (bind elsewhere only with `apiKey` or behind a proxy).
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
    /// Seconds from a request's head to the end of its body; slower requests get 408 and the
    /// connection is closed.
    public var requestTimeout: Double
    /// Seconds a connection may stay open without a request (keep-alive), or stall inside one,
    /// before it is closed. Answers being generated do not count.
    public var idleTimeout: Double
    /// Open connections at most; one more is answered 503 and closed.
    public var maxConnections: Int
    /// When set, `/v1/*` requires `Authorization: Bearer <apiKey>` (401 otherwise).
    public var apiKey: String?

    public init(plans: [String], auto: Bool = false, host: String = "127.0.0.1", port: Int = 8080,
                maxExpertMemory: Int? = nil, maxConcurrency: Int = 8, maxBodyBytes: Int = 1 << 20,
                expertPrecision: ExpertPrecision = .stored, memoryBudget: AvailableMemory.Budget? = nil,
                requestTimeout: Double = 30, idleTimeout: Double = 60, maxConnections: Int = 256, apiKey: String? = nil) {
        self.plans = plans
        self.auto = auto
        self.host = host
        self.port = port
        self.maxExpertMemory = maxExpertMemory
        self.maxConcurrency = maxConcurrency
        self.maxBodyBytes = maxBodyBytes
        self.expertPrecision = expertPrecision
        self.memoryBudget = memoryBudget
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.apiKey = apiKey
    }

    /// Whether `host` is reachable only from this machine.
    public var bindsLoopback: Bool {
        ["127.0.0.1", "::1", "localhost"].contains(host) || host.hasPrefix("127.")
    }
}
