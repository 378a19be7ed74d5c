/// A plan's change to how many experts each token runs in one layer (METHODS §14): a top-k
/// other than the family's, and/or a rule that skips the weakest of the chosen experts token
/// by token. Pruning shrinks what must be resident; this shrinks what every token reads.
///
/// The router first chooses `topK` experts (the family's when nil) exactly as it would, then
/// `skip` decides how many of them, best first, actually run; the gates of the ones that run
/// are renormalised and scaled as the family does. A token always runs a prefix of its
/// ranking and at least its best expert.
public struct RoutingRule: Codable, Sendable, Equatable {
    /// Experts chosen per token instead of the family's top-k (nil: the family's).
    public var topK: Int?
    /// Skips low-weight experts among the chosen ones (nil: every chosen expert runs).
    public var skip: ExpertSkip?

    public init(topK: Int? = nil, skip: ExpertSkip? = nil) {
        self.topK = topK
        self.skip = skip
    }
}

/// Which of a token's chosen experts run, from their raw router scores (softmax
/// probabilities, or sigmoid scores for DeepSeek-style routers), best first.
public enum ExpertSkip: Codable, Sendable, Equatable {
    /// Lu et al. ("Not All Experts are Equal"), generalised to every rank: rank r ≥ 2 runs while
    /// p_(r) ≥ β_r · p_(1); `thresholds[r − 2]` is β_r, taken from the calibration profile's
    /// histogram of p_(r)/p_(1) (the median in the paper). Ranks past the thresholds' end run.
    case ratio(thresholds: [Float])
    /// Smart expert reduction (ik_llama.cpp): the best `minimum` always run; rank r > minimum
    /// runs while p_(r) > t · p_(1). t = 0 is the unmodified model, t ≥ 1 a fixed top-`minimum`.
    case ser(minimum: Int, threshold: Float)
    /// Top-p routing: the shortest prefix of the ranking whose scores reach `p` of the total
    /// score over all routable experts (for softmax routers, cumulative probability ≥ p).
    /// p = 1 runs every chosen expert.
    case topP(p: Float)

    /// How many of the ranked experts run: 1...scores.count. `total` is the sum of the
    /// scores of every expert the router could choose (1 for softmax routers).
    public func runCount(rankedScores scores: [Float], total: Float) -> Int {
        guard let best = scores.first else { return 0 }
        switch self {
        case let .ratio(thresholds):
            var count = 1
            while count < scores.count, count - 1 >= thresholds.count || scores[count] >= thresholds[count - 1] * best { count += 1 }
            return count
        case let .ser(minimum, threshold):
            var count = min(minimum, scores.count)
            while count < scores.count, scores[count] > threshold * best { count += 1 }
            return max(count, 1)
        case let .topP(p):
            guard p < 1 else { return scores.count }
            var cumulative: Float = 0
            for (i, score) in scores.enumerated() {
                cumulative += score
                if cumulative >= p * total { return i + 1 }
            }
            return scores.count
        }
    }

    /// What is wrong with the rule for a layer choosing `topK` experts, or nil.
    public func problem(topK: Int) -> String? {
        switch self {
        case let .ratio(thresholds):
            if let bad = thresholds.first(where: { !$0.isFinite || $0 < 0 }) { return "skip threshold \(bad) must be finite and at least 0" }
        case let .ser(minimum, threshold):
            if !(1...topK).contains(minimum) { return "ser keeps at least \(minimum) experts; it must be in 1...\(topK) (the layer's top-k)" }
            if !threshold.isFinite || threshold < 0 { return "ser threshold \(threshold) must be finite and at least 0" }
        case let .topP(p):
            if !(p > 0 && p <= 1) { return "top-p \(p) must be in (0, 1]" }
        }
        return nil
    }
}

extension RoutingRule {
    /// What is wrong with the rule for a layer of `expertCount` experts (of which `routable`
    /// remain) and the family's `familyTopK`, or nil.
    public func problem(familyTopK: Int, routable: Int) -> String? {
        if let topK, !(1...routable).contains(topK) {
            return "top-k \(topK) must be in 1...\(routable) (the experts the layer keeps)"
        }
        return skip?.problem(topK: topK ?? familyTopK)
    }
}
