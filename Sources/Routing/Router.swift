import Foundation

/// The experts one token is sent to, with the coefficients its output is multiplied by.
public struct RoutingDecision: Sendable, Equatable {
    /// Chosen experts, best first.
    public var experts: [Int]
    /// The gates actually applied to each chosen expert's output.
    public var gates: [Float]
    /// The raw scores of the chosen experts before renormalisation and scaling
    /// (softmax probability or sigmoid score).
    public var scores: [Float]
}

/// A router: the gate function of one MoE layer, applied to router logits.
public struct Router: Sendable {
    public let config: RouterConfig
    public let correctionBias: [Float]?
    /// Experts the router may choose; nil means all. Pruned experts are left out of the
    /// softmax and of the selection, exactly as if their router rows had been deleted.
    public let available: [Bool]?
    /// Which of the chosen experts run (nil: all of them); `config.topK` already holds the
    /// rule's top-k.
    public let skip: ExpertSkip?

    /// `rule` (a plan's per-layer routing rule) replaces the family's top-k and may skip
    /// chosen experts; callers validate it first (`RoutingRule.problem`).
    public init(config: RouterConfig, correctionBias: [Float]? = nil, available: [Bool]? = nil, rule: RoutingRule? = nil) {
        var config = config
        if let topK = rule?.topK { config.topK = topK }
        precondition(config.topK >= 1 && config.topK <= config.expertCount, "top-k \(config.topK) outside 1...\(config.expertCount)")
        precondition(config.expertCount % max(config.groupCount, 1) == 0, "experts must split evenly into groups")
        precondition(!config.usesCorrectionBias || correctionBias?.count == config.expertCount)
        precondition(available == nil || (available!.count == config.expertCount && available!.filter { $0 }.count >= config.topK),
                     "fewer available experts than top-k")
        self.config = config
        self.correctionBias = correctionBias
        self.available = available
        skip = rule?.skip
    }

    /// Scores of all experts from the logits: softmax or sigmoid.
    public func scores(logits: UnsafeBufferPointer<Float>) -> [Float] {
        switch config.scoring {
        case .softmax:
            let maxLogit = logits.indices.filter { available?[$0] ?? true }.map { logits[$0] }.max() ?? 0
            var out = logits.indices.map { (available?[$0] ?? true) ? exp(logits[$0] - maxLogit) : 0 }
            let total = out.reduce(0, +)
            for i in out.indices { out[i] /= total }
            return out
        case .sigmoid:
            return logits.map { 1 / (1 + exp(-$0)) }
        }
    }

    /// Routes one token given its router logits (`expertCount` values).
    public func route(logits: UnsafeBufferPointer<Float>) -> RoutingDecision { route(logits: logits, skipping: skip) }

    /// Routes one token with `rule` in place of the router's own skip rule (nil: every chosen expert runs).
    public func route(logits: UnsafeBufferPointer<Float>, skipping rule: ExpertSkip?) -> RoutingDecision {
        precondition(logits.count == config.expertCount)
        let scores = scores(logits: logits)
        var choice = scores
        if let bias = correctionBias, config.usesCorrectionBias {
            for i in choice.indices { choice[i] += bias[i] }
        }
        if let available {
            for i in choice.indices where !available[i] { choice[i] = -.infinity }
        }
        if config.groupCount > 1 { maskWeakGroups(&choice) }
        var chosen = Self.topIndices(choice, k: config.topK)
        if let rule { chosen = skipped(chosen, scores: scores, rule: rule) }
        let raw = chosen.map { scores[$0] }
        var gates = raw
        if config.normalizeTopK {
            let denominator = gates.reduce(0, +) + config.normalizationEpsilon
            for i in gates.indices { gates[i] /= denominator }
        }
        if config.scalingFactor != 1 {
            for i in gates.indices { gates[i] *= config.scalingFactor }
        }
        return RoutingDecision(experts: chosen, gates: gates, scores: raw)
    }

    /// The chosen experts that run under `rule`: the weakest by raw score are dropped, the rest
    /// keep their order. (The raw score is what weighs an expert's output; with a correction
    /// bias the choice order can differ from it.)
    private func skipped(_ chosen: [Int], scores: [Float], rule: ExpertSkip) -> [Int] {
        let total = config.scoring == .softmax ? 1 : scores.indices.reduce(0) { $0 + ((available?[$1] ?? true) ? scores[$1] : 0) }
        let byScore = chosen.indices.sorted { scores[chosen[$0]] > scores[chosen[$1]] || (scores[chosen[$0]] == scores[chosen[$1]] && $0 < $1) }
        let runs = Set(byScore.prefix(rule.runCount(rankedScores: byScore.map { scores[chosen[$0]] }, total: total)))
        return chosen.indices.filter(runs.contains).map { chosen[$0] }
    }

    /// Sets the selection scores of experts outside the best groups to -inf.
    private func maskWeakGroups(_ choice: inout [Float]) {
        let groupSize = config.expertCount / config.groupCount
        let groupScores = (0..<config.groupCount).map { g -> Float in
            let best = Self.topIndices(Array(choice[(g * groupSize)..<((g + 1) * groupSize)]), k: min(2, groupSize))
            return best.reduce(0) { $0 + choice[g * groupSize + $1] }
        }
        let keep = Set(Self.topIndices(groupScores, k: config.topGroupCount))
        for g in 0..<config.groupCount where !keep.contains(g) {
            for i in (g * groupSize)..<((g + 1) * groupSize) { choice[i] = -.infinity }
        }
    }

    /// Indices of the `k` largest values, largest first; ties go to the lower index.
    public static func topIndices(_ values: [Float], k: Int) -> [Int] {
        var best = [Int]()
        best.reserveCapacity(k + 1)
        for i in values.indices {
            let v = values[i]
            if best.count == k, let last = best.last, !(v > values[last]) { continue }
            var position = best.count
            while position > 0 && v > values[best[position - 1]] { position -= 1 }
            best.insert(i, at: position)
            if best.count > k { best.removeLast() }
        }
        return best
    }
}
