import Foundation
import MoE
import Prometheus
import Synchronization

/// The server's metrics, exposed at `GET /metrics` in the Prometheus text format through
/// swift-prometheus:
///
/// - `moekit_requests_total{endpoint,status}`, `moekit_request_duration_seconds` (histogram,
///   from receiving a request to the last byte of its answer);
/// - `moekit_queue_wait_seconds` (from a generation request being parsed to a worker taking
///   it), `moekit_time_to_first_token_seconds` (parsed to first token: queue, batch admission
///   and prefill) and `moekit_inter_token_latency_seconds` (between consecutive tokens of one
///   answer), all histograms;
/// - tokens and plan choices per plan; resident expert bytes, the expert cache, the queue and
///   the batches, sampled from their statistics when scraped.
///
/// Gauges are printed as floating-point numbers (`12345.0`), as swift-prometheus writes them.
public final class ServerMetrics: Sendable {
    /// Upper bounds (seconds) of the request latency histogram; +Inf is implied.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Upper bounds (seconds) of the per-token histograms (time to first token includes the prefill).
    public static let tokenBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private let registry = PrometheusCollectorRegistry()
    private let requestDuration: ValueHistogram
    private let queueWait: ValueHistogram
    private let timeToFirstToken: ValueHistogram
    private let interTokenLatency: ValueHistogram
    /// The totals last written to counters that mirror statistics kept elsewhere (the cache's,
    /// the batches'), so each scrape adds only what happened since the previous one.
    private let mirrored = Mutex([String: Int]())

    public init() {
        requestDuration = registry.makeValueHistogram(
            descriptor: Self.name("request_duration", "seconds", "Time from receiving a request to the end of its answer."), buckets: Self.latencyBuckets)
        queueWait = registry.makeValueHistogram(
            descriptor: Self.name("queue_wait", "seconds", "Time a generation request waited for an inference worker (--max-concurrency)."), buckets: Self.tokenBuckets)
        timeToFirstToken = registry.makeValueHistogram(
            descriptor: Self.name("time_to_first_token", "seconds", "Time from a parsed generation request to its first token (queue, batch admission and prefill)."),
            buckets: Self.tokenBuckets)
        interTokenLatency = registry.makeValueHistogram(
            descriptor: Self.name("inter_token_latency", "seconds", "Time between consecutive tokens of one answer."), buckets: Self.tokenBuckets)
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "moekit", metricName: metric, unitName: unit, helpText: help)
    }

    /// One answered request (its status is known once the head is written).
    public func recordRequest(endpoint: String, status: Int) {
        registry.makeCounter(descriptor: Self.name("requests", "total", "HTTP requests answered, by endpoint and status code."),
                             labels: [("endpoint", endpoint), ("status", String(status))]).increment()
    }

    /// Seconds from receiving a request to writing the last byte of its answer.
    public func recordLatency(_ seconds: Double) { requestDuration.record(seconds) }

    /// One generation: its plan, token counts and timings. `tokenTimes` are the seconds since
    /// the request was parsed at which each token was chosen.
    public func recordGeneration(plan: String, auto: Bool, promptTokens prompt: Int, generatedTokens generated: Int,
                                 queueWaitSeconds: Double? = nil, tokenTimes: [Double] = []) {
        registry.makeCounter(descriptor: Self.name("plan_requests", "total", "Generation requests per plan; auto=\"true\" when chosen by routing signature."),
                             labels: [("plan", plan), ("auto", String(auto))]).increment()
        registry.makeCounter(descriptor: Self.name("prompt_tokens", "total", "Prompt tokens processed, by plan."), labels: [("plan", plan)])
            .increment(by: Int64(prompt))
        registry.makeCounter(descriptor: Self.name("generated_tokens", "total", "Tokens generated, by plan."), labels: [("plan", plan)])
            .increment(by: Int64(generated))
        if let queueWaitSeconds { queueWait.record(queueWaitSeconds) }
        if let first = tokenTimes.first { timeToFirstToken.record(first) }
        for (earlier, later) in zip(tokenTimes, tokenTimes.dropFirst()) { interTokenLatency.record(later - earlier) }
    }

    /// Request count for one endpoint and status (for tests and the benchmark), read back from
    /// the exposition.
    public func requestCount(endpoint: String, status: Int) -> Int {
        let prefix = "moekit_requests_total{endpoint=\"\(endpoint)\",status=\"\(status)\"} "
        let line = registry.emitToString().split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Double($0.dropFirst(prefix.count)) }.map { Int($0) } ?? 0
    }

    /// The exposition text; the gauges (and the counters mirrored from statistics) are sampled
    /// from the caller's values at scrape time. `cache` is given whenever the experts come
    /// through the expert cache, `--auto` or not.
    public func render(residentExpertBytes: Int, cache: ExpertCache.Statistics?, queue: InferenceQueue.Statistics,
                       batches: BatchGenerator.Statistics) -> String {
        gauge("resident_expert", "bytes", "Bytes of expert weights held in memory.", residentExpertBytes)
        if let cache {
            mirror("expert_cache_hits", "Expert look-ups answered from the expert cache.", cache.hits)
            mirror("expert_cache_misses", "Expert look-ups that loaded the expert from the store.", cache.misses)
            mirror("expert_cache_evictions", "Experts evicted (least recently used) to stay within the cache's bound.", cache.evictions)
            gauge("expert_cache", "entries", "Experts held in the expert cache (their bytes: moekit_resident_expert_bytes).", cache.entries)
            gauge("expert_cache_limit", "bytes", "The expert cache's bound (--max-expert-memory, or sized from the memory available); 0 = unbounded.",
                  cache.limitBytes ?? 0)
        }
        gauge("requests", "running", "Generation requests being computed now.", queue.running)
        gauge("requests", "waiting", "Generation requests queued for a worker (--max-concurrency).", queue.waiting)
        mirror("batch_steps", "Forward passes run for generation (each carries every sequence in flight of one plan).", batches.steps)
        mirror("batch_sequence_steps", "Sum of the sequences carried by each forward pass; divided by the steps, the mean batch size.", batches.sequenceSteps)
        gauge("batch", "largest", "The most sequences one forward pass has carried.", batches.largestBatch)
        return registry.emitToString()
    }

    private func gauge(_ metric: String, _ unit: String, _ help: String, _ value: Int) {
        registry.makeGauge(descriptor: Self.name(metric, unit, help)).set(Double(value))
    }

    /// A counter named `moekit_<metric>_total` brought up to `total`.
    private func mirror(_ metric: String, _ help: String, _ total: Int) {
        let counter = registry.makeCounter(descriptor: Self.name(metric, "total", help))
        let added = mirrored.withLock { reported in
            defer { reported[metric] = max(reported[metric] ?? 0, total) }
            return max(0, total - (reported[metric] ?? 0))
        }
        if added > 0 { counter.increment(by: Int64(added)) }
    }
}
