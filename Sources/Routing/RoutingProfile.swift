/// Everything one calibration pass records about routing, as sums, so that two profiles of
/// the same model merge exactly by adding (`merge`). All criteria of the compression methods
/// are derived from these sums afterwards (see `ExpertCriteria`), without running the model
/// again. Definitions follow METHODS.md §11; "routed" means the tokens whose top-k holds the expert.
public struct RoutingProfile: Codable, Sendable, Equatable {
    public static let formatVersion = 1

    public var formatVersion = RoutingProfile.formatVersion
    /// Identifies the model the profile was taken on (the store's fingerprint).
    public var modelFingerprint: String
    /// Free-form provenance: calibration file, sample count, etc.
    public var source: String
    /// Number of calibration sequences.
    public var sequenceCount: Int
    /// Indexed like the model's layers; nil for dense layers.
    public var layers: [LayerProfile?]
    /// Every how many tokens all experts are run densely (HC-SMoE's all-token mean); 0 = never.
    public var denseSampleStride: Int

    public init(modelFingerprint: String, source: String, layers: [LayerProfile?], denseSampleStride: Int) {
        self.modelFingerprint = modelFingerprint
        self.source = source
        self.sequenceCount = 0
        self.layers = layers
        self.denseSampleStride = denseSampleStride
    }

    /// Tokens seen (per MoE layer, all equal).
    public var tokenCount: Int { layers.compactMap { $0 }.first?.tokenCount ?? 0 }

    /// Adds another profile of the same model taken with the same settings.
    public mutating func merge(_ other: RoutingProfile) throws {
        guard other.modelFingerprint == modelFingerprint else {
            throw ProfileError.incompatible("profiles come from different models (\(modelFingerprint) vs \(other.modelFingerprint))")
        }
        guard other.layers.count == layers.count, other.denseSampleStride == denseSampleStride else {
            throw ProfileError.incompatible("profiles have different layer counts or dense sampling strides")
        }
        for l in layers.indices {
            switch (layers[l], other.layers[l]) {
            case (nil, nil): continue
            case let (mine?, theirs?): layers[l] = try mine.adding(theirs)
            default: throw ProfileError.incompatible("layer \(l) is MoE in one profile and dense in the other")
            }
        }
        sequenceCount += other.sequenceCount
        if !other.source.isEmpty && other.source != source { source += " + " + other.source }
    }
}

public enum ProfileError: Error, CustomStringConvertible, Equatable {
    case incompatible(String)
    case noTokens

    public var description: String {
        switch self {
        case let .incompatible(reason): return "cannot merge profiles: \(reason)"
        case .noTokens: return "the profile saw no tokens"
        }
    }
}

/// Sums for one MoE layer.
public struct LayerProfile: Codable, Sendable, Equatable {
    public static let histogramBins = 256

    public var expertCount: Int
    public var hiddenSize: Int
    public var topK: Int
    /// T: valid tokens seen.
    public var tokenCount: Int
    public var experts: [ExpertSums]
    /// Σ over routed tokens of E_j(x), `E × d` (novices, routed characteristic activation).
    public var routedOutputSum: [Double]
    /// Σ of E_j(x) over the densely sampled tokens, `E × d` (HC-SMoE), and how many there were.
    public var denseOutputSum: [Double]
    public var denseTokenCount: Int
    /// C_ij: tokens that routed to both i and j (diagonal = n_i), `E × E`.
    public var coActivation: [Double]
    /// Σ z_i z_j of router logits over all tokens, `E × E` (exact cosine for M-SMoE).
    public var logitGram: [Double]
    /// Histogram over [0, 1] of p_(r)/p_(1) for ranks r = 2…k: `(k - 1) × bins`.
    public var scoreRatioHistogram: [Double]
    /// Histogram over [-1, 1] of cos(h, h + y) per token (EASY-EP's token contribution is 1 - cos).
    public var residualCosineHistogram: [Double]
    /// Largest |h| in the residual stream entering the block, and its channel.
    public var residualMax: Double
    public var residualMaxChannel: Int

    public init(expertCount: Int, hiddenSize: Int, topK: Int) {
        self.expertCount = expertCount
        self.hiddenSize = hiddenSize
        self.topK = topK
        tokenCount = 0
        experts = Array(repeating: ExpertSums(), count: expertCount)
        routedOutputSum = Array(repeating: 0, count: expertCount * hiddenSize)
        denseOutputSum = Array(repeating: 0, count: expertCount * hiddenSize)
        denseTokenCount = 0
        coActivation = Array(repeating: 0, count: expertCount * expertCount)
        logitGram = Array(repeating: 0, count: expertCount * expertCount)
        scoreRatioHistogram = Array(repeating: 0, count: max(topK - 1, 0) * Self.histogramBins)
        residualCosineHistogram = Array(repeating: 0, count: Self.histogramBins)
        residualMax = 0
        residualMaxChannel = 0
    }

    /// The elementwise sum of two layer profiles (maxima take the larger).
    public func adding(_ o: LayerProfile) throws -> LayerProfile {
        guard o.expertCount == expertCount, o.hiddenSize == hiddenSize, o.topK == topK else {
            throw ProfileError.incompatible("layer shapes differ")
        }
        var r = self
        r.tokenCount += o.tokenCount
        r.experts = zip(experts, o.experts).map { $0.adding($1) }
        func add(_ a: inout [Double], _ b: [Double]) { for i in a.indices { a[i] += b[i] } }
        add(&r.routedOutputSum, o.routedOutputSum)
        add(&r.denseOutputSum, o.denseOutputSum)
        r.denseTokenCount += o.denseTokenCount
        add(&r.coActivation, o.coActivation)
        add(&r.logitGram, o.logitGram)
        add(&r.scoreRatioHistogram, o.scoreRatioHistogram)
        add(&r.residualCosineHistogram, o.residualCosineHistogram)
        if o.residualMax > residualMax { (r.residualMax, r.residualMaxChannel) = (o.residualMax, o.residualMaxChannel) }
        return r
    }
}

/// Per-(layer, expert) scalar sums, in double precision.
public struct ExpertSums: Codable, Sendable, Equatable {
    /// n_j: routed tokens.
    public var count: Double = 0
    /// Σ g (gate actually applied) and Σ p (raw top-k score before renormalisation).
    public var gateSum: Double = 0
    public var scoreSum: Double = 0
    /// Σ g‖E‖, Σ p‖E‖, Σ ‖E‖, Σ ‖E‖², Σ g²‖E‖².
    public var gateNormSum: Double = 0
    public var scoreNormSum: Double = 0
    public var normSum: Double = 0
    public var normSquaredSum: Double = 0
    public var gateSquaredNormSquaredSum: Double = 0
    /// EASY-EP: Σ g‖E‖·u_t with u_t = max(0, 1 - cos(h_t, h_t + y_t)).
    public var easyEPSum: Double = 0
    /// TCESS (PreMoe, k' = 1): Σ z_j over tokens whose top-1 expert is j, and their count.
    public var topOneLogitSum: Double = 0
    public var topOneCount: Double = 0
    /// Σ z_j and Σ z_j² over all tokens.
    public var logitSum: Double = 0
    public var logitSquaredSum: Double = 0
    /// Largest |element| of E_j(x) over routed tokens, and its channel (super experts).
    public var maxAbsOutput: Double = 0
    public var maxAbsOutputChannel: Int = 0

    public init() {}

    public func adding(_ o: ExpertSums) -> ExpertSums {
        var r = self
        r.count += o.count
        r.gateSum += o.gateSum
        r.scoreSum += o.scoreSum
        r.gateNormSum += o.gateNormSum
        r.scoreNormSum += o.scoreNormSum
        r.normSum += o.normSum
        r.normSquaredSum += o.normSquaredSum
        r.gateSquaredNormSquaredSum += o.gateSquaredNormSquaredSum
        r.easyEPSum += o.easyEPSum
        r.topOneLogitSum += o.topOneLogitSum
        r.topOneCount += o.topOneCount
        r.logitSum += o.logitSum
        r.logitSquaredSum += o.logitSquaredSum
        if o.maxAbsOutput > maxAbsOutput { (r.maxAbsOutput, r.maxAbsOutputChannel) = (o.maxAbsOutput, o.maxAbsOutputChannel) }
        return r
    }
}
