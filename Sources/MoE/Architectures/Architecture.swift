import Foundation
import Routing

/// Reads `config.json` and dispatches to the family's architecture file.
public enum Architectures {
    public static var supportedModelTypes: [String] { ArchitectureFamily.allCases.map(\.rawValue) }

    public static func describe(configData: Data, file: String = "config.json") throws -> ModelDescription {
        let config = try HFConfig.load(configData, file: file)
        guard let family = ArchitectureFamily(rawValue: config.modelType) else {
            throw CheckpointError.unknownModelType(file: file, modelType: config.modelType, supported: supportedModelTypes)
        }
        switch family {
        case .mixtral: return try Mixtral.describe(config, file: file)
        case .qwen2Moe: return try Qwen2MoE.describe(config, file: file)
        case .qwen3Moe: return try Qwen3MoE.describe(config, file: file)
        case .olmoe: return try OLMoE.describe(config, file: file)
        case .deepseekV3: return try DeepseekV3.describe(config, file: file)
        case .glm4Moe: return try Glm4Moe.describe(config, file: file)
        case .gptOss: return try GptOss.describe(config, file: file)
        }
    }
}

/// The parts that most families share, so each family file states only what is its own.
/// Every value is range-checked as it is read (`ConfigValidation.swift`).
struct CommonConfig {
    let config: HFConfig
    let file: String

    var vocabularySize: Int { get throws { try config.integer(config.vocabSize, "vocab_size", in: 1...ConfigLimits.vocabulary, file: file) } }
    var hiddenSize: Int { get throws { try config.integer(config.hiddenSize, "hidden_size", in: 1...ConfigLimits.width, file: file) } }
    var layerCount: Int { get throws { try config.integer(config.numHiddenLayers, "num_hidden_layers", in: 1...ConfigLimits.layers, file: file) } }
    var headCount: Int { get throws { try config.integer(config.numAttentionHeads, "num_attention_heads", in: 1...ConfigLimits.heads, file: file) } }
    var expertCount: Int {
        get throws { try config.integer(config.expertCount, config.expertCountKey, in: 1...ConfigLimits.experts, file: file) }
    }
    /// The router's top-k: at least one expert, at most all of them.
    var topK: Int { get throws { try config.integer(config.numExpertsPerTok, "num_experts_per_tok", in: 1...expertCount, file: file) } }

    /// Key/value heads (default: one per query head); each is shared by the same number of query heads.
    var keyValueHeadCount: Int {
        get throws {
            let heads = try headCount
            guard let kv = config.numKeyValueHeads else { return heads }
            guard kv >= 1, kv <= heads, heads % kv == 0 else {
                let divisors = (1...heads).filter { heads % $0 == 0 }.map(String.init).joined(separator: ", ")
                throw config.outOfRange("num_key_value_heads", kv, "a divisor of num_attention_heads \(heads): \(divisors)", file: file)
            }
            return kv
        }
    }

    var headDim: Int {
        get throws {
            if let given = config.headDim { return try config.integer(given, "head_dim", in: 1...ConfigLimits.headDim, file: file) }
            // Without head_dim, transformers uses hidden_size // num_attention_heads.
            let (hidden, heads) = (try hiddenSize, try headCount)
            guard heads <= hidden else { throw config.outOfRange("num_attention_heads", heads, "1...hidden_size (\(hidden)) when head_dim is absent", file: file) }
            return hidden / heads
        }
    }

    /// A feed-forward width the family requires.
    func width(_ value: Int?, _ key: String) throws -> Int {
        try config.integer(value, key, in: 1...ConfigLimits.width, file: file)
    }

    /// Grouped-query attention as Mixtral, Qwen and OLMoE use it.
    func groupedAttention(qkvBias: Bool, qkNorm: AttentionDescription.QKNorm, clipQKV: Float? = nil,
                          slidingWindow: Int? = nil) throws -> AttentionDescription {
        let heads = try headCount
        let headDim = try headDim
        return AttentionDescription(
            headCount: heads, keyValueHeadCount: try keyValueHeadCount,
            queryKeyHeadDim: headDim, valueHeadDim: headDim, qkvBias: qkvBias, outputBias: false,
            qkNorm: qkNorm, clipQKV: clipQKV,
            slidingWindow: try config.optionalInteger(slidingWindow, "sliding_window", in: 1...ConfigLimits.positions, file: file),
            latent: nil, softmaxScale: 1 / Float(headDim).squareRoot())
    }

    /// RoPE over `dimensions` per head (read from `dimensionsKey`), from `rope_parameters`
    /// or `rope_theta`/`rope_scaling`. Only the first `partial_rotary_factor` of the
    /// dimensions rotate (the family's default when the file has no factor).
    func rope(dimensions: Int, dimensionsKey: String = "head_dim", interleaved: Bool = false,
              defaultTheta: Double = 10_000, defaultRotaryFraction: Double = 1) throws -> RoPEDescription {
        let p = config.rope
        let kind = p.kind
        guard ["default", "linear", "yarn"].contains(kind) else {
            throw CheckpointError.malformedConfig(file: file, reason: "unsupported rope_type '\(kind)' (supported: default, linear, yarn)")
        }
        let theta = try config.real(p.ropeTheta, config.ropeThetaKey, kind == "yarn" ? .aboveOne : .positive, file: file) ?? defaultTheta
        try config.checkRopeScaling(p, file: file)
        // Top level in older files, inside rope_parameters in transformers 5's; the top level wins.
        let fractionKey = config.partialRotaryFactor == nil && p.partialRotaryFactor != nil
            ? "\(config.ropeKeyPrefix).partial_rotary_factor" : "partial_rotary_factor"
        let given = try config.real(config.partialRotaryFactor ?? p.partialRotaryFactor, fractionKey, .fraction, file: file)
        let fraction = given ?? defaultRotaryFraction
        // RoPE rotates pairs of dimensions: an odd or empty count has no meaning.
        let rotated = Int(Double(dimensions) * fraction)
        guard rotated >= 2, rotated % 2 == 0 else {
            let key = fraction == 1 ? dimensionsKey : "\(dimensionsKey) × \(fractionKey)"
            throw config.outOfRange(key, rotated, "an even number ≥ 2 (RoPE rotates pairs of dimensions)", file: file)
        }
        return RoPEDescription(
            theta: theta, dimensions: rotated, interleaved: interleaved, kind: kind,
            factor: p.factor, originalMaxPositionEmbeddings: p.originalMaxPositionEmbeddings,
            betaFast: p.betaFast, betaSlow: p.betaSlow, mscale: p.mscale, mscaleAllDim: p.mscaleAllDim,
            attentionFactor: p.attentionFactor, truncate: p.truncate)
    }

    /// Qwen-style layer schedule: a layer is sparse unless listed in `mlp_only_layers`
    /// or skipped by `decoder_sparse_step`.
    func qwenLayers(moe: MoEDescription) throws -> [FeedForwardDescription] {
        let layers = try layerCount
        let step = try config.optionalInteger(config.decoderSparseStep, "decoder_sparse_step", in: 1...ConfigLimits.layers, file: file) ?? 1
        let denseOnly = Set(config.mlpOnlyLayers ?? [])
        if let outside = denseOnly.sorted().first(where: { !(0..<layers).contains($0) }) {
            throw config.outOfRange("mlp_only_layers", outside, "layer indices in 0..<\(layers)", file: file)
        }
        let intermediate = config.intermediateSize
        return try (0..<layers).map { l in
            if !denseOnly.contains(l) && (l + 1) % step == 0 { return .moe(moe) }
            return .dense(intermediateSize: try width(intermediate, "intermediate_size"))
        }
    }

    /// Families that select with a softmax over all experts.
    func softmaxRouter(normalize: Bool) throws -> RouterConfig {
        RouterConfig(expertCount: try expertCount, topK: try topK, scoring: .softmax, normalizeTopK: normalize)
    }

    func description(family: ArchitectureFamily, attention: AttentionDescription, rope: RoPEDescription,
                     layers: [FeedForwardDescription], names: TensorNames, tiedByDefault: Bool,
                     predictionLayers: [FeedForwardDescription]? = nil,
                     defaultEpsilon: Double = 1e-6) throws -> ModelDescription {
        ModelDescription(
            family: family, vocabularySize: try vocabularySize, hiddenSize: try hiddenSize,
            rmsNormEpsilon: Float(try config.real(config.rmsNormEps, "rms_norm_eps", .positiveFloat, file: file) ?? defaultEpsilon),
            tieWordEmbeddings: config.tieWordEmbeddings ?? tiedByDefault,
            maxPositionEmbeddings: try config.optionalInteger(config.maxPositionEmbeddings, "max_position_embeddings",
                                                              in: 1...ConfigLimits.positions, file: file) ?? 4096,
            attention: attention, rope: rope, layers: layers, names: names,
            bosTokenID: config.bosTokenId, eosTokenIDs: config.eosTokenId?.ids ?? [], predictionLayers: predictionLayers)
    }

    func rejectSlidingWindow() throws {
        if config.useSlidingWindow == true {
            throw CheckpointError.malformedConfig(file: file, reason: "use_sliding_window is not supported for model_type '\(config.modelType)'")
        }
    }
}
