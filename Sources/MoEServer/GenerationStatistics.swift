import Foundation
import MoE

/// How fast one generation ran, split as llama-cli and mlx-lm split it: prompt processing
/// (the prefill, up to the first token) and generation (each later token costs one decode
/// step), with the peak memory and, when experts came through the cache, its hit rate.
public struct GenerationStatistics: Sendable, Equatable {
    public var promptTokens: Int
    /// From the start of the run to the first token (or to its end when no token came).
    public var promptSeconds: Double
    public var generatedTokens: Int
    /// From the first token to the last: `generatedTokens - 1` decode steps.
    public var generationSeconds: Double
    public var peakResidentBytes: Int?
    public var cache: ExpertCache.Statistics?

    public init(promptTokens: Int, promptSeconds: Double, generatedTokens: Int, generationSeconds: Double,
                peakResidentBytes: Int? = nil, cache: ExpertCache.Statistics? = nil) {
        self.promptTokens = promptTokens
        self.promptSeconds = promptSeconds
        self.generatedTokens = generatedTokens
        self.generationSeconds = generationSeconds
        self.peakResidentBytes = peakResidentBytes
        self.cache = cache
    }

    /// Prompt tokens per second of prefill.
    public var promptRate: Double? { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : nil }
    /// Tokens per second after the first (the first comes out of the prefill); nil below two tokens.
    public var generationRate: Double? {
        generatedTokens >= 2 && generationSeconds > 0 ? Double(generatedTokens - 1) / generationSeconds : nil
    }

    /// e.g. `prompt: 5 tokens, 210.3 tok/s | generation: 48 tokens, 61.2 tok/s | peak memory: 98.4 MiB`
    /// `| expert cache: 700 hits, 68 misses (91.1% hit rate), 40 evictions`.
    public var line: String {
        func tokens(_ n: Int) -> String { n == 1 ? "1 token" : "\(n) tokens" }
        func rate(_ r: Double?) -> String { r.map { String(format: ", %.1f tok/s", $0) } ?? "" }
        var parts = ["prompt: \(tokens(promptTokens))\(rate(promptRate))", "generation: \(tokens(generatedTokens))\(rate(generationRate))"]
        if let peakResidentBytes { parts.append(String(format: "peak memory: %.1f MiB", Double(peakResidentBytes) / 1_048_576)) }
        if let cache {
            let hitRate = cache.hitRate.map { String(format: " (%.1f%% hit rate)", 100 * $0) } ?? ""
            parts.append("expert cache: \(cache.hits) hits, \(cache.misses) misses\(hitRate), \(cache.evictions) evictions")
        }
        return parts.joined(separator: " | ")
    }
}

/// Times a `Generator` run from outside: made just before `generate`, told of each token in
/// its callback, then asked for the statistics. (The generator samples the first token from
/// the prefill's logits, so the first callback marks the end of prompt processing.)
public struct GenerationTimer {
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var first: ContinuousClock.Instant?
    private var last: ContinuousClock.Instant?
    private var tokens = 0
    public let promptTokens: Int

    public init(promptTokens: Int) {
        self.promptTokens = promptTokens
        start = clock.now
    }

    public mutating func tokenProduced() {
        let now = clock.now
        if first == nil { first = now }
        last = now
        tokens += 1
    }

    /// The run so far; call when `generate` has returned.
    public func statistics(peakResidentBytes: Int? = nil, cache: ExpertCache.Statistics? = nil) -> GenerationStatistics {
        func seconds(_ d: Duration) -> Double { d.seconds }
        let end = clock.now
        return GenerationStatistics(promptTokens: promptTokens, promptSeconds: seconds((first ?? end) - start),
                                    generatedTokens: tokens, generationSeconds: first.map { seconds(last! - $0) } ?? 0,
                                    peakResidentBytes: peakResidentBytes, cache: cache)
    }
}
