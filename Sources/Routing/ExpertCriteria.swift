import Foundation

/// The saliency criteria of one (layer, expert), derived from a profile's sums.
/// Definitions (METHODS.md): n = routed tokens, T = tokens seen, g = applied gate,
/// p = raw top-k score, E = expert output before gating, z = router logit.
public struct ExpertCriteria: Codable, Sendable, Equatable {
    public var layer: Int
    public var expert: Int
    /// n_j.
    public var frequency: Double
    /// Σ g (REAP's weighted frequency, "soft frequency").
    public var softFrequency: Double
    /// Σ ‖E‖ and its mean over routed tokens (EAN; the mean is also called MAN).
    public var eanSum: Double
    public var ean: Double
    /// REAP: mean over routed tokens of g‖E‖ with the gates the model applies.
    public var reap: Double
    /// REAP with raw (not renormalised) top-k scores in place of the gates.
    public var reapRawScore: Double
    /// EASY-EP: Σ g‖E‖·max(0, 1 − cos(h, h + y)).
    public var easyEP: Double
    /// PreMoe TCESS (k' = 1): Σ over tokens whose top-1 is j of z_j, divided by T.
    public var tcess: Double
    /// MoNE: routing score s_j = Σ g / T, output deviation φ = sqrt(Σ‖E − mean‖² / (n − 1)), redundancy s·φ.
    public var moneRoutingScore: Double
    public var moneDeviation: Double
    public var moneRedundancy: Double
    /// MC-MoE factors, normalised to sum 1 over the layer: φ = activation share, w = raw-score share.
    public var mcmoeActivationShare: Double
    public var mcmoeScoreShare: Double
    /// ‖mean routed output‖ (REAP's ean_ca).
    public var routedMeanNorm: Double
    /// Largest |element| of the expert's outputs, and its channel.
    public var maxAbsOutput: Double
    public var maxAbsOutputChannel: Int
    /// Share of all routing slots of the layer: n_j / (T·k).
    public var slotShare: Double
    /// Flagged as a super expert (see `RoutingProfile.superExperts`).
    public var superExpert: Bool
}

/// Names of the scalar criteria a pruning method can rank experts by.
public enum Criterion: String, CaseIterable, Codable, Sendable {
    case frequency, softFrequency = "soft-frequency", ean, reap, easyEP = "easy-ep", tcess
    case mone, routedMeanNorm = "ean-ca"

    /// Higher means more important, for every criterion. (MoNE's redundancy is already
    /// "low = prunable", so it ranks the same way.)
    public func value(_ c: ExpertCriteria) -> Double {
        switch self {
        case .frequency: return c.frequency
        case .softFrequency: return c.softFrequency
        case .ean: return c.ean
        case .reap: return c.reap
        case .easyEP: return c.easyEP
        case .tcess: return c.tcess
        case .mone: return c.moneRedundancy
        case .routedMeanNorm: return c.routedMeanNorm
        }
    }
}

extension RoutingProfile {
    /// All criteria for every (layer, expert), layer by layer.
    public func criteria(superExpertLayerFraction: Double = 0.75) -> [[ExpertCriteria]] {
        let supers = superExperts(layerFraction: superExpertLayerFraction)
        return layers.enumerated().map { l, layer -> [ExpertCriteria] in
            guard let layer else { return [] }
            let totalCount = layer.experts.reduce(0) { $0 + $1.count }
            let totalScore = layer.experts.reduce(0) { $0 + $1.scoreSum }
            let T = Double(max(layer.tokenCount, 1))
            return layer.experts.enumerated().map { j, s -> ExpertCriteria in
                let n = s.count
                let d = layer.hiddenSize
                let mean = (0..<d).map { layer.routedOutputSum[j * d + $0] / max(n, 1) }
                let meanNorm2 = mean.reduce(0) { $0 + $1 * $1 }
                // Σ‖E − mean‖² = Σ‖E‖² − n‖mean‖²
                let spread = max(s.normSquaredSum - n * meanNorm2, 0)
                let deviation = n > 1 ? (spread / (n - 1)).squareRoot() : 0
                let routing = s.gateSum / T
                return ExpertCriteria(
                    layer: l, expert: j, frequency: n, softFrequency: s.gateSum,
                    eanSum: s.normSum, ean: n > 0 ? s.normSum / n : 0,
                    reap: n > 0 ? s.gateNormSum / n : 0, reapRawScore: n > 0 ? s.scoreNormSum / n : 0,
                    easyEP: s.easyEPSum, tcess: s.topOneLogitSum / T,
                    moneRoutingScore: routing, moneDeviation: deviation, moneRedundancy: routing * deviation,
                    mcmoeActivationShare: totalCount > 0 ? n / totalCount : 0,
                    mcmoeScoreShare: totalScore > 0 ? s.scoreSum / totalScore : 0,
                    routedMeanNorm: meanNorm2.squareRoot(),
                    maxAbsOutput: s.maxAbsOutput, maxAbsOutputChannel: s.maxAbsOutputChannel,
                    slotShare: n / (T * Double(layer.topK)),
                    superExpert: supers.contains(LayerExpert(layer: l, expert: j)))
            }
        }
    }

    /// Super experts (arXiv 2507.23279, as REAP detects them): experts whose largest |output|
    /// exceeds both the 99.5th percentile of all experts' maxima and a tenth of the global
    /// maximum, looking at the first `layerFraction` of the MoE layers.
    public func superExperts(layerFraction: Double = 0.75) -> Set<LayerExpert> {
        let moeLayers = layers.indices.filter { layers[$0] != nil }
        let considered = moeLayers.prefix(max(1, Int((Double(moeLayers.count) * layerFraction).rounded(.up))))
        var maxima = [(LayerExpert, Double)]()
        for l in considered {
            for (j, s) in layers[l]!.experts.enumerated() { maxima.append((LayerExpert(layer: l, expert: j), s.maxAbsOutput)) }
        }
        guard let globalMax = maxima.map(\.1).max(), globalMax > 0 else { return [] }
        let threshold = max(Self.percentile(maxima.map(\.1), 99.5), globalMax / 10)
        return Set(maxima.filter { $0.1 > threshold || $0.1 == globalMax }.map(\.0))
    }

    /// Linear-interpolation percentile (numpy's default).
    static func percentile(_ values: [Double], _ q: Double) -> Double {
        let sorted = values.sorted()
        guard sorted.count > 1 else { return sorted.first ?? 0 }
        let position = q / 100 * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down)), upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }
}

/// A (layer, expert) pair.
public struct LayerExpert: Hashable, Codable, Sendable, Comparable {
    public var layer: Int
    public var expert: Int
    public init(layer: Int, expert: Int) { self.layer = layer; self.expert = expert }
    public static func < (a: LayerExpert, b: LayerExpert) -> Bool { (a.layer, a.expert) < (b.layer, b.expert) }
}

extension LayerProfile {
    /// Shannon entropy (bits) of the expert-selection distribution n_j / Σ n.
    public var routingEntropy: Double {
        let total = experts.reduce(0) { $0 + $1.count }
        guard total > 0 else { return 0 }
        return -experts.reduce(0) { acc, s in
            let p = s.count / total
            return p > 0 ? acc + p * log2(p) : acc
        }
    }

    /// Expert-selection frequencies normalised to sum 1.
    public var selectionDistribution: [Double] {
        let total = experts.reduce(0) { $0 + $1.count }
        return experts.map { total > 0 ? $0.count / total : 0 }
    }

    /// Cosine similarity of expert i's and j's router-logit columns over all tokens (M-SMoE).
    public func logitCosine(_ i: Int, _ j: Int) -> Double {
        let denominator = (logitGram[i * expertCount + i] * logitGram[j * expertCount + j]).squareRoot()
        return denominator > 0 ? logitGram[i * expertCount + j] / denominator : 0
    }

    /// HC-SMoE feature: the mean of E_j(x) over the densely sampled tokens.
    public func denseOutputMean(_ j: Int) -> [Double] {
        (0..<hiddenSize).map { denseOutputSum[j * hiddenSize + $0] / Double(max(denseTokenCount, 1)) }
    }

    /// MoNE novice vector: the mean of E_j(x) over routed tokens.
    public func routedOutputMean(_ j: Int) -> [Double] {
        (0..<hiddenSize).map { routedOutputSum[j * hiddenSize + $0] / max(experts[j].count, 1) }
    }

    /// Lu et al.'s β for rank r (2…k): the median of p_(r)/p_(1), read from the histogram.
    public func medianScoreRatio(rank r: Int) -> Double { scoreRatioQuantile(rank: r, quantile: 0.5) ?? 1 }

    /// The `quantile` (0…1) of p_(r)/p_(1) over the profiled tokens for rank r (2…k), read
    /// from the histogram with linear interpolation inside a bin; nil when no token was seen.
    public func scoreRatioQuantile(rank r: Int, quantile: Double) -> Double? {
        precondition((2...topK).contains(r) && (0...1).contains(quantile))
        let bins = LayerProfile.histogramBins
        let row = Array(scoreRatioHistogram[((r - 2) * bins)..<((r - 1) * bins)])
        let total = row.reduce(0, +)
        guard total > 0 else { return nil }
        let target = quantile * total
        var cumulative = 0.0
        for (i, count) in row.enumerated() where count > 0 {
            if cumulative + count >= target { return (Double(i) + (target - cumulative) / count) / Double(bins) }
            cumulative += count
        }
        return 1
    }
}

/// Jensen–Shannon divergence in bits between two distributions.
public func jensenShannonDivergence(_ p: [Double], _ q: [Double]) -> Double {
    precondition(p.count == q.count)
    func kl(_ a: [Double], _ m: [Double]) -> Double {
        zip(a, m).reduce(0) { $1.0 > 0 ? $0 + $1.0 * log2($1.0 / $1.1) : $0 }
    }
    let m = zip(p, q).map { ($0 + $1) / 2 }
    return kl(p, m) / 2 + kl(q, m) / 2
}
