import Foundation

/// The fields of a Hugging Face `config.json` that MoEKit reads, for every supported
/// family. Both spellings that exist in the wild are accepted where they differ
/// (`num_experts` / `num_local_experts` / `n_routed_experts`, top-level `rope_theta` /
/// `rope_scaling` / `rope_parameters`). Architecture files turn this into a
/// `ModelDescription`.
public struct HFConfig: Decodable, Sendable {
    public var modelType: String
    public var vocabSize: Int?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var rmsNormEps: Double?
    public var maxPositionEmbeddings: Int?
    public var tieWordEmbeddings: Bool?
    public var ropeTheta: Double?
    public var ropeScaling: RopeParameters?
    public var ropeParameters: RopeParameters?
    public var partialRotaryFactor: Double?
    public var slidingWindow: Int?
    public var useSlidingWindow: Bool?
    /// Per-layer attention kind (gpt-oss): `sliding_attention` or `full_attention`.
    public var layerTypes: [String]?
    public var swigluAlpha: Double?
    public var swigluLimit: Double?

    public var numLocalExperts: Int?
    public var numExperts: Int?
    public var nRoutedExperts: Int?
    public var numExpertsPerTok: Int?
    public var moeIntermediateSize: Int?
    public var normTopkProb: Bool?
    public var sharedExpertIntermediateSize: Int?
    public var decoderSparseStep: Int?
    public var mlpOnlyLayers: [Int]?
    public var attentionBias: Bool?
    public var qkvBias: Bool?
    public var clipQkv: Double?

    public var qLoraRank: Int?
    public var kvLoraRank: Int?
    public var qkNopeHeadDim: Int?
    public var qkRopeHeadDim: Int?
    public var vHeadDim: Int?
    public var nSharedExperts: Int?
    public var firstKDenseReplace: Int?
    public var routedScalingFactor: Double?
    public var nGroup: Int?
    public var topkGroup: Int?
    public var scoringFunc: String?
    public var topkMethod: String?
    public var ropeInterleave: Bool?
    /// GLM-4.5: RMSNorm on each query and key head (`use_qk_norm`).
    public var useQkNorm: Bool?
    /// Multi-token-prediction layers stored after the decoder layers (GLM-4.5, DeepSeek-V3).
    public var numNextnPredictLayers: Int?

    /// How the checkpoint's weights are quantized (FP8 block scales, MXFP4, …); nil when they are not.
    public var quantizationConfig: QuantizationConfig?

    public var bosTokenId: Int?
    public var eosTokenId: TokenIDList?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim", rmsNormEps = "rms_norm_eps", maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings", ropeTheta = "rope_theta", ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters", partialRotaryFactor = "partial_rotary_factor"
        case slidingWindow = "sliding_window", useSlidingWindow = "use_sliding_window"
        case layerTypes = "layer_types", swigluAlpha = "swiglu_alpha", swigluLimit = "swiglu_limit"
        case numLocalExperts = "num_local_experts", numExperts = "num_experts", nRoutedExperts = "n_routed_experts"
        case numExpertsPerTok = "num_experts_per_tok", moeIntermediateSize = "moe_intermediate_size"
        case normTopkProb = "norm_topk_prob", sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
        case attentionBias = "attention_bias", qkvBias = "qkv_bias", clipQkv = "clip_qkv"
        case qLoraRank = "q_lora_rank", kvLoraRank = "kv_lora_rank", qkNopeHeadDim = "qk_nope_head_dim"
        case qkRopeHeadDim = "qk_rope_head_dim", vHeadDim = "v_head_dim", nSharedExperts = "n_shared_experts"
        case firstKDenseReplace = "first_k_dense_replace", routedScalingFactor = "routed_scaling_factor"
        case nGroup = "n_group", topkGroup = "topk_group", scoringFunc = "scoring_func", topkMethod = "topk_method"
        case ropeInterleave = "rope_interleave", useQkNorm = "use_qk_norm", numNextnPredictLayers = "num_nextn_predict_layers"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
        case quantizationConfig = "quantization_config"
    }

    /// Decodes `config.json`, naming the file in any error.
    public static func load(_ data: Data, file: String) throws -> HFConfig {
        do {
            return try JSONDecoder().decode(HFConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw CheckpointError.malformedConfig(file: file, reason: "missing key '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw CheckpointError.malformedConfig(file: file, reason: "field '\(path)': \(context.debugDescription)")
        } catch {
            throw CheckpointError.malformedConfig(file: file, reason: "not valid JSON")
        }
    }

    /// A required field, or an error that names it.
    public func require<T>(_ value: T?, _ key: String, file: String) throws -> T {
        guard let value else { throw CheckpointError.malformedConfig(file: file, reason: "missing key '\(key)' for model_type '\(modelType)'") }
        return value
    }

    /// The routed expert count under whichever name the file uses.
    public var expertCount: Int? { numLocalExperts ?? numExperts ?? nRoutedExperts }

    /// RoPE settings under whichever name the file uses; `rope_parameters` wins.
    public var rope: RopeParameters {
        var merged = ropeParameters ?? ropeScaling ?? RopeParameters()
        if merged.ropeTheta == nil { merged.ropeTheta = ropeTheta }
        return merged
    }
}

/// `rope_parameters` (transformers 5) or `rope_scaling` (older files).
public struct RopeParameters: Codable, Sendable, Equatable {
    public var ropeTheta: Double?
    public var ropeType: String?
    public var type: String?
    public var factor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var attentionFactor: Double?
    public var truncate: Bool?
    /// transformers 5 saves `partial_rotary_factor` here; older files have it at the top level.
    public var partialRotaryFactor: Double?

    enum CodingKeys: String, CodingKey {
        case ropeTheta = "rope_theta", ropeType = "rope_type", type, factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case betaFast = "beta_fast", betaSlow = "beta_slow", mscale, mscaleAllDim = "mscale_all_dim"
        case attentionFactor = "attention_factor", truncate, partialRotaryFactor = "partial_rotary_factor"
    }

    public init() {}

    public var kind: String { ropeType ?? type ?? "default" }
}

/// `eos_token_id` is an integer in some files and a list in others.
public struct TokenIDList: Decodable, Sendable, Equatable {
    public var ids: [Int]
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(Int.self) { ids = [one] } else { ids = try container.decode([Int].self) }
    }
}
