import ExpertStore
import MoE
import Routing

/// `--budget search`: how many experts each MoE layer keeps, chosen by measurement rather
/// than by one threshold (METHODS §14).
///
/// Within a layer the criterion still decides *which* experts stay (protected experts first,
/// then by score); the search decides *how many*. For each layer `l` and count `n` it measures
/// the block-output error
///
///     err_l(n) = Σ_t ‖Ŷ_t(n) − Y_t‖²
///
/// on calibration tokens, where `Y_t` is the unmodified layer's routed output and `Ŷ_t(n)` the
/// output with only the top-`n` experts routable (top-k renormalised over them as the family
/// does), both on the full model's hidden states. Then it solves exactly, by dynamic
/// programming over layers,
///
///     min Σ_l err_l(n_l)   subject to   Σ_l n_l ≤ round(keep · Σ_l E_l),   n_l ≥ max(top-k, protected_l).
///
/// The errors are absolute, not relative to each layer's output: after the final norm a
/// perturbation of the residual stream counts the same whichever layer made it. Layers are
/// measured one at a time from the store (`RecoveryReplay`), so memory holds one layer.
struct BudgetSearch {
    let store: ExpertStore
    let calibration: [[Int]]
    let precision: WeightPrecision

    /// Calibration sequences measured (the errors only rank counts; more adds time, not accuracy to speak of).
    static let sequenceLimit = 8

    struct Result {
        /// Kept experts of every MoE layer, sorted.
        var kept: [Int: [Int]]
        /// Experts kept per MoE layer, in layer order.
        var counts: [Int]
        /// `errors[l][n]`: the measured block-output error of layer `l` keeping `n` experts.
        var errors: [Int: [Int: Double]]
    }

    func search(scores: [[Double]], keepFraction: Double, minimumPerLayer: Int, protected: Set<LayerExpert>,
                progress: (String) -> Void) throws -> Result {
        guard !calibration.isEmpty else {
            throw PlanError.invalid(plan: "", reason: "--budget search measures errors on calibration text; none was given")
        }
        let description = try store.modelDescription()
        let moeLayers = description.moeLayerIndices
        let total = moeLayers.reduce(0) { $0 + scores[$1].count }
        let budget = Int((Double(total) * keepFraction).rounded())
        var rankings = [Int: [Int]]()
        var lowest = [Int: Int]()
        for l in moeLayers {
            let supers = Set(protected.filter { $0.layer == l }.map(\.expert))
            rankings[l] = ExpertSelection.ranking(scores[l], protected: supers)
            lowest[l] = min(scores[l].count, max(minimumPerLayer, supers.count))
        }
        let floor = lowest.values.reduce(0, +)
        guard floor <= budget else {
            throw PlanError.invalid(plan: "", reason: "--keep \(keepFraction) allows \(budget) experts, but top-k and the protected experts need \(floor)")
        }

        var errors = [Int: [Int: Double]]()
        var replay = try RecoveryReplay(store: store, calibration: Array(calibration.prefix(Self.sequenceLimit)), precision: precision)
        for l in 0..<description.layerCount {
            // One load of the layer's experts serves the target, every count and the advance.
            let originals = try replay.originals(layer: l)
            if let moe = description.layers[l].moe {
                let full = try replay.unmodifiedSamples(layer: l, originals: originals)
                let highest = min(moe.expertCount, budget - (floor - lowest[l]!))
                errors[l] = [moe.expertCount: 0]
                for n in lowest[l]!...highest where n < moe.expertCount {
                    let survivors = rankings[l]!.prefix(n).sorted()
                    var slotOf = [Int?](repeating: nil, count: moe.expertCount)
                    for (s, e) in survivors.enumerated() { slotOf[e] = s }
                    let pruned = try replay.samples(layer: l, expertMap: ExpertMap(slotOfExpert: slotOf),
                                                    slots: survivors.map { try originals.expert(layer: l, index: $0) })
                    errors[l]![n] = zip(pruned.routedOutputs, full.routedOutputs).reduce(0.0) { sum, pair in
                        let difference = Double(pair.0 - pair.1)
                        return sum + difference * difference
                    }
                }
                progress("measured layer \(l) at \(lowest[l]!)–\(highest) experts")
            }
            try replay.advance(layer: l, plan: nil, slots: [], originals: originals)
        }
        let counts = try Self.allocate(errors: moeLayers.map { errors[$0]! }, budget: budget)
        var kept = [Int: [Int]]()
        for (l, n) in zip(moeLayers, counts) { kept[l] = rankings[l]!.prefix(n).sorted() }
        return Result(kept: kept, counts: counts, errors: errors)
    }

    /// The counts, one per layer and each a key of that layer's errors, that minimise the
    /// summed error with a total of at most `budget`: an exact dynamic programme over layers
    /// (`best[b]` = least error of the layers so far using `b` experts).
    static func allocate(errors: [[Int: Double]], budget: Int) throws -> [Int] {
        var best = [Double](repeating: .infinity, count: budget + 1)
        best[0] = 0
        var choice = [[Int]]()   // choice[layer][b]: the count that layer takes on the best path to b
        for layerErrors in errors {
            var next = [Double](repeating: .infinity, count: budget + 1)
            var picks = [Int](repeating: -1, count: budget + 1)
            for b in 0...budget where best[b].isFinite {
                for (n, error) in layerErrors.sorted(by: { $0.key < $1.key }) where b + n <= budget && best[b] + error < next[b + n] {
                    next[b + n] = best[b] + error
                    picks[b + n] = n
                }
            }
            best = next
            choice.append(picks)
        }
        guard let end = best.indices.filter({ best[$0].isFinite }).min(by: { (best[$0], $0) < (best[$1], $1) }) else {
            throw PlanError.invalid(plan: "", reason: "no per-layer counts fit a budget of \(budget) experts")
        }
        var counts = [Int](repeating: 0, count: errors.count)
        var b = end
        for layer in errors.indices.reversed() {
            counts[layer] = choice[layer][b]
            b -= counts[layer]
        }
        return counts
    }
}
