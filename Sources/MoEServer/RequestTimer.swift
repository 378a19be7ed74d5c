/// Times one generation request from the moment it was parsed: how long it waited for an
/// inference worker, and when each of its tokens was chosen. The metrics turn these into
/// queue-wait, time-to-first-token and inter-token histograms.
struct RequestTimer: Sendable {
    private let received: ContinuousClock.Instant
    /// Seconds from parsing to a worker taking the request; nil until it starts.
    private(set) var queueWait: Double?
    /// Seconds from parsing at which each token was chosen.
    private(set) var tokenTimes = [Double]()

    init(received: ContinuousClock.Instant = .now) { self.received = received }

    mutating func workerStarted() { queueWait = (ContinuousClock.now - received).seconds }

    mutating func tokenChosen() { tokenTimes.append((ContinuousClock.now - received).seconds) }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
