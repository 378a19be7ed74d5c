import Routing

/// The supported checkpoint families (`model_type` in `config.json`).
public enum ArchitectureFamily: String, Codable, Sendable, CaseIterable {
    case mixtral
    case qwen2Moe = "qwen2_moe"
    case qwen3Moe = "qwen3_moe"
    case olmoe
    case deepseekV3 = "deepseek_v3"
    case glm4Moe = "glm4_moe"
    case gptOss = "gpt_oss"
}

/// One normalised description of a model, whatever family it comes from. The forward
/// pass reads only this (plus tensors by the names in `names`), never `config.json`.
public struct ModelDescription: Codable, Sendable, Equatable {
    public var family: ArchitectureFamily
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var rmsNormEpsilon: Float
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int
    public var attention: AttentionDescription
    public var rope: RoPEDescription
    /// The feed-forward part of each decoder layer, in order.
    public var layers: [FeedForwardDescription]
    public var names: TensorNames
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    /// The feed-forward of each multi-token-prediction ("nextn") layer that follows the decoder
    /// layers in the checkpoint (`model.layers.{layerCount + i}`, GLM-4.5's
    /// `num_nextn_predict_layers`). They are imported and exported with the model but never
    /// run: the forward pass reads `layers` only. Optional so that stores written before
    /// the field existed still decode.
    public var predictionLayers: [FeedForwardDescription]?

    public var layerCount: Int { layers.count }

    /// Indices of the layers whose feed-forward is a mixture of experts.
    public var moeLayerIndices: [Int] { layers.indices.filter { layers[$0].moe != nil } }

    /// The MoE description of layer `index`, if it is an MoE layer.
    public func moe(layer index: Int) -> MoEDescription? { layers[index].moe }

    public init(family: ArchitectureFamily, vocabularySize: Int, hiddenSize: Int, rmsNormEpsilon: Float, tieWordEmbeddings: Bool, maxPositionEmbeddings: Int, attention: AttentionDescription, rope: RoPEDescription, layers: [FeedForwardDescription], names: TensorNames, bosTokenID: Int? = nil, eosTokenIDs: [Int] = [], predictionLayers: [FeedForwardDescription]? = nil) {
        self.family = family
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.rmsNormEpsilon = rmsNormEpsilon
        self.tieWordEmbeddings = tieWordEmbeddings
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.attention = attention
        self.rope = rope
        self.layers = layers
        self.names = names
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
        self.predictionLayers = predictionLayers
    }
}

public struct AttentionDescription: Codable, Sendable, Equatable {
    public enum QKNorm: String, Codable, Sendable {
        case none
        /// RMSNorm over each head's `head_dim` (Qwen3).
        case perHead
        /// RMSNorm over the whole q and k projections (OLMoE).
        case wholeProjection
    }

    public var headCount: Int
    public var keyValueHeadCount: Int
    /// Query/key head size (for MLA: nope + rope parts).
    public var queryKeyHeadDim: Int
    public var valueHeadDim: Int
    public var qkvBias: Bool
    public var outputBias: Bool
    public var qkNorm: QKNorm
    public var clipQKV: Float?
    /// Keys older than this many positions are masked (Mixtral's `sliding_window`).
    public var slidingWindow: Int?
    /// The layers `slidingWindow` applies to; nil: every layer (gpt-oss alternates sliding and
    /// full attention by `layer_types`).
    public var slidingWindowLayers: [Int]?
    /// Each head has a learned logit (`self_attn.sinks`) that joins its softmax's denominator
    /// and attends to nothing (gpt-oss).
    public var sinks: Bool
    /// Multi-head latent attention parameters (DeepSeek-V3); nil for grouped-query attention.
    public var latent: LatentAttentionDescription?
    /// The factor applied to q·k before the softmax.
    public var softmaxScale: Float

    public init(headCount: Int, keyValueHeadCount: Int, queryKeyHeadDim: Int, valueHeadDim: Int, qkvBias: Bool, outputBias: Bool, qkNorm: QKNorm, clipQKV: Float?, slidingWindow: Int?, latent: LatentAttentionDescription?, softmaxScale: Float, slidingWindowLayers: [Int]? = nil, sinks: Bool = false) {
        self.slidingWindowLayers = slidingWindowLayers
        self.sinks = sinks
        self.headCount = headCount
        self.keyValueHeadCount = keyValueHeadCount
        self.queryKeyHeadDim = queryKeyHeadDim
        self.valueHeadDim = valueHeadDim
        self.qkvBias = qkvBias
        self.outputBias = outputBias
        self.qkNorm = qkNorm
        self.clipQKV = clipQKV
        self.slidingWindow = slidingWindow
        self.latent = latent
        self.softmaxScale = softmaxScale
    }
}

extension AttentionDescription {
    /// The sliding window of layer `l`, nil for full attention.
    public func slidingWindow(layer l: Int) -> Int? {
        guard let slidingWindow else { return nil }
        return slidingWindowLayers.map { $0.contains(l) ? slidingWindow : nil } ?? slidingWindow
    }

    enum CodingKeys: String, CodingKey {
        case headCount, keyValueHeadCount, queryKeyHeadDim, valueHeadDim, qkvBias, outputBias, qkNorm, clipQKV
        case slidingWindow, slidingWindowLayers, sinks, latent, softmaxScale
    }

    /// Descriptions stored before gpt-oss have no `slidingWindowLayers` or `sinks`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(headCount: try c.decode(Int.self, forKey: .headCount), keyValueHeadCount: try c.decode(Int.self, forKey: .keyValueHeadCount),
                  queryKeyHeadDim: try c.decode(Int.self, forKey: .queryKeyHeadDim), valueHeadDim: try c.decode(Int.self, forKey: .valueHeadDim),
                  qkvBias: try c.decode(Bool.self, forKey: .qkvBias), outputBias: try c.decode(Bool.self, forKey: .outputBias),
                  qkNorm: try c.decode(QKNorm.self, forKey: .qkNorm), clipQKV: try c.decodeIfPresent(Float.self, forKey: .clipQKV),
                  slidingWindow: try c.decodeIfPresent(Int.self, forKey: .slidingWindow),
                  latent: try c.decodeIfPresent(LatentAttentionDescription.self, forKey: .latent),
                  softmaxScale: try c.decode(Float.self, forKey: .softmaxScale),
                  slidingWindowLayers: try c.decodeIfPresent([Int].self, forKey: .slidingWindowLayers),
                  sinks: try c.decodeIfPresent(Bool.self, forKey: .sinks) ?? false)
    }
}

public struct LatentAttentionDescription: Codable, Sendable, Equatable {
    public var queryLoraRank: Int?
    public var keyValueLoraRank: Int
    public var noPositionHeadDim: Int
    public var ropeHeadDim: Int

    public init(queryLoraRank: Int?, keyValueLoraRank: Int, noPositionHeadDim: Int, ropeHeadDim: Int) {
        self.queryLoraRank = queryLoraRank
        self.keyValueLoraRank = keyValueLoraRank
        self.noPositionHeadDim = noPositionHeadDim
        self.ropeHeadDim = ropeHeadDim
    }
}

public struct RoPEDescription: Codable, Sendable, Equatable {
    public var theta: Double
    /// Number of rotated dimensions per head.
    public var dimensions: Int
    /// DeepSeek rotates pairs (x0, x1), (x2, x3)…; the others rotate (x_i, x_{i+d/2}).
    public var interleaved: Bool
    public var kind: String
    public var factor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var attentionFactor: Double?
    public var truncate: Bool?

    public init(theta: Double, dimensions: Int, interleaved: Bool, kind: String, factor: Double? = nil, originalMaxPositionEmbeddings: Int? = nil, betaFast: Double? = nil, betaSlow: Double? = nil, mscale: Double? = nil, mscaleAllDim: Double? = nil, attentionFactor: Double? = nil, truncate: Bool? = nil) {
        self.theta = theta
        self.dimensions = dimensions
        self.interleaved = interleaved
        self.kind = kind
        self.factor = factor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.betaFast = betaFast
        self.betaSlow = betaSlow
        self.mscale = mscale
        self.mscaleAllDim = mscaleAllDim
        self.attentionFactor = attentionFactor
        self.truncate = truncate
    }
}

public enum FeedForwardDescription: Codable, Sendable, Equatable {
    case dense(intermediateSize: Int)
    case moe(MoEDescription)

    public var moe: MoEDescription? {
        if case let .moe(description) = self { return description }
        return nil
    }
}

public struct MoEDescription: Codable, Sendable, Equatable {
    public var router: RouterConfig
    /// The router is a linear layer with a bias (`…router.bias [experts]`, gpt-oss): the bias
    /// is part of the logits, unlike DeepSeek's correction bias, which only steers selection.
    public var routerBias: Bool
    public var expertIntermediateSize: Int
    /// What each routed expert computes from its projections.
    public var expertFunction: ExpertFunction
    public var sharedExpert: SharedExpertDescription?

    public var expertCount: Int { router.expertCount }
    public var topK: Int { router.topK }

    public init(router: RouterConfig, expertIntermediateSize: Int, sharedExpert: SharedExpertDescription?,
                routerBias: Bool = false, expertFunction: ExpertFunction = .swiglu) {
        self.router = router
        self.routerBias = routerBias
        self.expertIntermediateSize = expertIntermediateSize
        self.expertFunction = expertFunction
        self.sharedExpert = sharedExpert
    }

    enum CodingKeys: String, CodingKey { case router, routerBias, expertIntermediateSize, expertFunction, sharedExpert }

    /// Descriptions stored before gpt-oss have neither a router bias nor an expert function.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(router: try c.decode(RouterConfig.self, forKey: .router),
                  expertIntermediateSize: try c.decode(Int.self, forKey: .expertIntermediateSize),
                  sharedExpert: try c.decodeIfPresent(SharedExpertDescription.self, forKey: .sharedExpert),
                  routerBias: try c.decodeIfPresent(Bool.self, forKey: .routerBias) ?? false,
                  expertFunction: try c.decodeIfPresent(ExpertFunction.self, forKey: .expertFunction) ?? .swiglu)
    }
}

/// What a routed expert computes: `down(act(gate · x, up · x))`, with or without a bias on
/// each projection.
public struct ExpertFunction: Codable, Sendable, Equatable {
    public enum Activation: Codable, Sendable, Equatable {
        /// `silu(gate) · up` (every family but gpt-oss).
        case swiglu
        /// gpt-oss: gate clamped to at most `limit`, up to `[-limit, limit]`, then
        /// `(up + 1) · gate · sigmoid(alpha · gate)`.
        case clampedSwiGLU(alpha: Float, limit: Float)
    }

    public var activation: Activation
    /// Each projection adds a bias (`…experts.{e}.{gate,up,down}_proj.bias`).
    public var hasBias: Bool

    public init(activation: Activation, hasBias: Bool) {
        self.activation = activation
        self.hasBias = hasBias
    }

    public static let swiglu = ExpertFunction(activation: .swiglu, hasBias: false)
}

public struct SharedExpertDescription: Codable, Sendable, Equatable {
    public var intermediateSize: Int
    /// Qwen2-MoE multiplies the shared expert by sigmoid(shared_expert_gate · x).
    public var gated: Bool

    public init(intermediateSize: Int, gated: Bool) {
        self.intermediateSize = intermediateSize
        self.gated = gated
    }
}

/// The three projections of a SwiGLU feed-forward network.
public enum Projection: String, Codable, Sendable, CaseIterable {
    case gate, up, down
}
