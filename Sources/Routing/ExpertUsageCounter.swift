/// Counts the experts each MoE layer chooses per token, to report what a plan's routing rule
/// (`RoutingRule`) saves: with skipping the count varies token by token. Experts that share
/// a merged slot count once each, as the router chose them; additive novices do not count.
public final class ExpertUsageCounter: RoutingObserver {
    public private(set) var tokens = [Int: Int]()
    public private(set) var experts = [Int: Int]()

    public init() {}

    public var needsExpertOutputs: Bool { false }

    public func observe(_ observation: MoELayerObservation) {
        tokens[observation.layer, default: 0] += observation.tokenCount
        experts[observation.layer, default: 0] += observation.decisions.reduce(0) { $0 + $1.experts.count }
    }

    /// Mean experts per token, by MoE layer index (layers that saw no tokens are absent).
    public var meanExpertsPerLayer: [Int: Double] {
        var means = [Int: Double]()
        for (layer, count) in tokens where count > 0 { means[layer] = Double(experts[layer] ?? 0) / Double(count) }
        return means
    }

    /// Mean over layers of the experts run per token.
    public var meanExpertsPerToken: Double {
        let means = meanExpertsPerLayer.values
        return means.isEmpty ? 0 : means.reduce(0, +) / Double(means.count)
    }
}
