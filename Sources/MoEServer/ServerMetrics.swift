import Foundation
import MoE

/// The server's counters, rendered for `GET /metrics` in the Prometheus text format
/// (version 0.0.4). One lock guards everything: updates are a few additions per request.
public final class ServerMetrics: @unchecked Sendable {
    /// Upper bounds (seconds) of the request latency histogram; +Inf is implied.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private let lock = NSLock()
    private var requests = [RequestKey: Int]()
    private var generatedTokens = [String: Int]()
    private var promptTokens = [String: Int]()
    private var planChoices = [PlanChoiceKey: Int]()
    private var latencyCounts = [Int](repeating: 0, count: ServerMetrics.latencyBuckets.count + 1)
    private var latencySum = 0.0

    private struct RequestKey: Hashable { var endpoint: String, status: Int }
    private struct PlanChoiceKey: Hashable { var plan: String, auto: Bool }

    public init() {}

    /// One answered request (its status is known once the head is written).
    public func recordRequest(endpoint: String, status: Int) {
        lock.withLock { requests[RequestKey(endpoint: endpoint, status: status), default: 0] += 1 }
    }

    /// Seconds from receiving a request to writing the last byte of its answer.
    public func recordLatency(_ seconds: Double) {
        let bucket = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
        lock.withLock {
            latencyCounts[bucket] += 1
            latencySum += seconds
        }
    }

    public func recordGeneration(plan: String, auto: Bool, promptTokens prompt: Int, generatedTokens generated: Int) {
        lock.withLock {
            planChoices[PlanChoiceKey(plan: plan, auto: auto), default: 0] += 1
            promptTokens[plan, default: 0] += prompt
            generatedTokens[plan, default: 0] += generated
        }
    }

    /// Request count for one endpoint and status (for tests and the benchmark).
    public func requestCount(endpoint: String, status: Int) -> Int {
        lock.withLock { requests[RequestKey(endpoint: endpoint, status: status)] ?? 0 }
    }

    /// The exposition text; the gauges are sampled by the caller at scrape time. `cache` is
    /// given whenever the experts come through the expert cache, `--auto` or not.
    public func render(residentExpertBytes: Int, cache: ExpertCache.Statistics?, queue: InferenceQueue.Statistics,
                       batches: BatchGenerator.Statistics) -> String {
        lock.lock()
        defer { lock.unlock() }
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)] = [], _ value: some CustomStringConvertible) {
            let rendered = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
            out += "\(name)\(rendered) \(value)\n"
        }

        family("moekit_requests_total", "counter", "HTTP requests answered, by endpoint and status code.")
        for (key, count) in requests.sorted(by: { ($0.key.endpoint, $0.key.status) < ($1.key.endpoint, $1.key.status) }) {
            sample("moekit_requests_total", [("endpoint", key.endpoint), ("status", String(key.status))], count)
        }
        family("moekit_request_duration_seconds", "histogram", "Time from receiving a request to the end of its answer.")
        var cumulative = 0
        for (i, bound) in Self.latencyBuckets.enumerated() {
            cumulative += latencyCounts[i]
            sample("moekit_request_duration_seconds_bucket", [("le", String(bound))], cumulative)
        }
        cumulative += latencyCounts.last!
        sample("moekit_request_duration_seconds_bucket", [("le", "+Inf")], cumulative)
        sample("moekit_request_duration_seconds_sum", [], latencySum)
        sample("moekit_request_duration_seconds_count", [], cumulative)
        family("moekit_generated_tokens_total", "counter", "Tokens generated, by plan.")
        for (plan, count) in generatedTokens.sorted(by: { $0.key < $1.key }) { sample("moekit_generated_tokens_total", [("plan", plan)], count) }
        family("moekit_prompt_tokens_total", "counter", "Prompt tokens processed, by plan.")
        for (plan, count) in promptTokens.sorted(by: { $0.key < $1.key }) { sample("moekit_prompt_tokens_total", [("plan", plan)], count) }
        family("moekit_plan_requests_total", "counter", "Generation requests per plan; auto=\"true\" when chosen by routing signature.")
        for (key, count) in planChoices.sorted(by: { ($0.key.plan, String($0.key.auto)) < ($1.key.plan, String($1.key.auto)) }) {
            sample("moekit_plan_requests_total", [("plan", key.plan), ("auto", String(key.auto))], count)
        }
        family("moekit_resident_expert_bytes", "gauge", "Bytes of expert weights held in memory.")
        sample("moekit_resident_expert_bytes", [], residentExpertBytes)
        if let cache {
            family("moekit_expert_cache_hits_total", "counter", "Expert look-ups answered from the expert cache.")
            sample("moekit_expert_cache_hits_total", [], cache.hits)
            family("moekit_expert_cache_misses_total", "counter", "Expert look-ups that loaded the expert from the store.")
            sample("moekit_expert_cache_misses_total", [], cache.misses)
            family("moekit_expert_cache_evictions_total", "counter", "Experts evicted (least recently used) to stay within the cache's bound.")
            sample("moekit_expert_cache_evictions_total", [], cache.evictions)
            family("moekit_expert_cache_entries", "gauge", "Experts held in the expert cache (their bytes: moekit_resident_expert_bytes).")
            sample("moekit_expert_cache_entries", [], cache.entries)
            family("moekit_expert_cache_limit_bytes", "gauge", "The expert cache's bound (--max-expert-memory, or sized from the memory available); 0 = unbounded.")
            sample("moekit_expert_cache_limit_bytes", [], cache.limitBytes ?? 0)
        }
        family("moekit_requests_running", "gauge", "Generation requests being computed now.")
        sample("moekit_requests_running", [], queue.running)
        family("moekit_requests_waiting", "gauge", "Generation requests queued for a worker (--max-concurrency).")
        sample("moekit_requests_waiting", [], queue.waiting)
        family("moekit_batch_steps_total", "counter", "Forward passes run for generation (each carries every sequence in flight of one plan).")
        sample("moekit_batch_steps_total", [], batches.steps)
        family("moekit_batch_sequence_steps_total", "counter", "Sum of the sequences carried by each forward pass; divided by the steps, the mean batch size.")
        sample("moekit_batch_sequence_steps_total", [], batches.sequenceSteps)
        family("moekit_batch_largest", "gauge", "The most sequences one forward pass has carried.")
        sample("moekit_batch_largest", [], batches.largestBatch)
        return out
    }

    private func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
