/// How a router turns its logits into scores.
public enum RouterScoring: String, Codable, Sendable {
    /// Softmax over all experts (Mixtral, Qwen-MoE, OLMoE, DeepSeek-V2). With `normalizeTopK`
    /// this is also gpt-oss's softmax over the top-k logits alone: softmax preserves the order,
    /// and renormalising the chosen probabilities cancels the other experts' share of the
    /// denominator. Its raw scores (the full softmax) are what the profiler's criteria read.
    case softmax
    /// Independent sigmoid per expert (DeepSeek-V3, GLM-4.5).
    case sigmoid
}

/// The semantics of one MoE layer's router, as a model family defines them.
public struct RouterConfig: Codable, Sendable, Equatable {
    public var expertCount: Int
    public var topK: Int
    public var scoring: RouterScoring
    /// Divide the selected scores by their sum (Mixtral always; Qwen/OLMoE when `norm_topk_prob`).
    public var normalizeTopK: Bool
    /// Added to the denominator of that normalisation (DeepSeek-V3 uses 1e-20).
    public var normalizationEpsilon: Float
    /// Multiplies the final gates (DeepSeek `routed_scaling_factor`).
    public var scalingFactor: Float
    /// Group-limited selection: experts form `groupCount` equal groups, only the best
    /// `topGroupCount` groups (ranked by the sum of their two best scores) may be chosen.
    public var groupCount: Int
    public var topGroupCount: Int
    /// A per-expert bias added to the scores for selection only (DeepSeek-V3 `e_score_correction_bias`).
    public var usesCorrectionBias: Bool

    public init(expertCount: Int, topK: Int, scoring: RouterScoring, normalizeTopK: Bool,
                normalizationEpsilon: Float = 0, scalingFactor: Float = 1,
                groupCount: Int = 1, topGroupCount: Int = 1, usesCorrectionBias: Bool = false) {
        self.expertCount = expertCount
        self.topK = topK
        self.scoring = scoring
        self.normalizeTopK = normalizeTopK
        self.normalizationEpsilon = normalizationEpsilon
        self.scalingFactor = scalingFactor
        self.groupCount = groupCount
        self.topGroupCount = topGroupCount
        self.usesCorrectionBias = usesCorrectionBias
    }
}
