import Routing

/// How many experts each layer keeps.
public enum PruningBudget: String, Codable, Sendable, CaseIterable {
    /// The same fraction in every layer.
    case uniform
    /// One threshold over all layers (non-uniform counts), at least top-k per layer.
    case global
    /// Per-layer counts chosen to minimise the block-output error on calibration tokens
    /// under the total budget (`BudgetSearch`).
    case search
}

/// Chooses which experts to keep from a saliency criterion (higher = more important).
public enum ExpertSelection {
    /// - Parameters:
    ///   - scores: `scores[layer][expert]`; layers without experts are empty.
    ///   - keepFraction: fraction of experts kept (per layer, or over the model for `.global`).
    ///   - minimumPerLayer: never keep fewer than this in a layer (top-k).
    ///   - protected: experts kept whatever their score (super experts).
    ///   - groups: for layers whose router picks among equal groups of experts (DeepSeek-V3's
    ///     and GLM-4.5's `n_group` with `topk_group` < `n_group`), the number of groups.
    ///     A uniform budget keeps the same number in every group (the layer's target rounded
    ///     up to a multiple of the group count, the best of each group by score), so the
    ///     pruned layer is still groups of equal size that a checkpoint can describe. Global
    ///     budgets do not balance groups; their exports are refused when groups differ.
    /// - Returns: the kept experts of every MoE layer, sorted.
    public static func keep(scores: [[Double]], keepFraction: Double, budget: PruningBudget,
                            minimumPerLayer: Int, protected: Set<LayerExpert> = [], groups: [Int: Int] = [:]) -> [Int: [Int]] {
        precondition(keepFraction > 0 && keepFraction <= 1, "keep fraction must be in (0, 1]")
        var kept = [Int: Set<Int>]()
        let moeLayers = scores.indices.filter { !scores[$0].isEmpty }
        for l in moeLayers { kept[l] = Set(protected.filter { $0.layer == l }.map(\.expert)) }
        func ranked(_ l: Int) -> [Int] { ranking(scores[l]) }
        switch budget {
        case .uniform:
            for l in moeLayers {
                let target = max(minimumPerLayer, Int((Double(scores[l].count) * keepFraction).rounded()))
                if let g = groups[l], g > 1, scores[l].count % g == 0 {
                    let size = scores[l].count / g
                    let quota = min(size, (target + g - 1) / g)
                    for e in ranked(l) where kept[l]!.filter({ $0 / size == e / size }).count < quota { kept[l]!.insert(e) }
                } else {
                    for e in ranked(l) where kept[l]!.count < target { kept[l]!.insert(e) }
                }
            }
        case .global:
            for l in moeLayers {
                for e in ranked(l).prefix(minimumPerLayer) { kept[l]!.insert(e) }
            }
            let total = moeLayers.reduce(0) { $0 + scores[$1].count }
            let target = Int((Double(total) * keepFraction).rounded())
            let candidates = moeLayers.flatMap { l in scores[l].indices.map { (l, $0, scores[l][$0]) } }
                .sorted { ($0.2, -$0.0, -$0.1) > ($1.2, -$1.0, -$1.1) }
            var count = kept.values.reduce(0) { $0 + $1.count }
            for (l, e, _) in candidates where count < target && !kept[l]!.contains(e) {
                kept[l]!.insert(e)
                count += 1
            }
        case .search:
            preconditionFailure("searched budgets are measured: BudgetSearch gives the counts and the experts")
        }
        return kept.mapValues { $0.sorted() }
    }

    /// A layer's experts from most to least important: `protected` first, then by score;
    /// ties go to the lower index.
    public static func ranking(_ scores: [Double], protected: Set<Int> = []) -> [Int] {
        scores.indices.sorted { (protected.contains($0) ? 1 : 0, scores[$0], -$0) > (protected.contains($1) ? 1 : 0, scores[$1], -$1) }
    }
}
