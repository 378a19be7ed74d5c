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
        }
    }
}

/// The parts that most families share, so each family file states only what is its own.
struct CommonConfig {
    let config: HFConfig
    let file: String

    var vocabularySize: Int { get throws { try config.require(config.vocabSize, "vocab_size", file: file) } }
    var hiddenSize: Int { get throws { try config.require(config.hiddenSize, "hidden_size", file: file) } }
    var layerCount: Int { get throws { try config.require(config.numHiddenLayers, "num_hidden_layers", file: file) } }
    var headCount: Int { get throws { try config.require(config.numAttentionHeads, "num_attention_heads", file: file) } }
    var expertCount: Int { get throws { try config.require(config.expertCount, "num_experts", file: file) } }
    var topK: Int { get throws { try config.require(config.numExpertsPerTok, "num_experts_per_tok", file: file) } }

    var headDim: Int {
        get throws { try config.headDim ?? (hiddenSize / headCount) }
    }

    /// Grouped-query attention as Mixtral, Qwen and OLMoE use it.
    func groupedAttention(qkvBias: Bool, qkNorm: AttentionDescription.QKNorm, clipQKV: Float? = nil,
                          slidingWindow: Int? = nil) throws -> AttentionDescription {
        let heads = try headCount
        let headDim = try headDim
        return AttentionDescription(
            headCount: heads, keyValueHeadCount: config.numKeyValueHeads ?? heads,
            queryKeyHeadDim: headDim, valueHeadDim: headDim, qkvBias: qkvBias, outputBias: false,
            qkNorm: qkNorm, clipQKV: clipQKV, slidingWindow: slidingWindow, latent: nil,
            softmaxScale: 1 / Float(headDim).squareRoot())
    }

    /// RoPE over `dimensions` per head, from `rope_parameters` or `rope_theta`/`rope_scaling`.
    func rope(dimensions: Int, interleaved: Bool = false, defaultTheta: Double = 10_000) throws -> RoPEDescription {
        let p = config.rope
        let kind = p.kind
        guard ["default", "linear", "yarn"].contains(kind) else {
            throw CheckpointError.malformedConfig(file: file, reason: "unsupported rope_type '\(kind)' (supported: default, linear, yarn)")
        }
        let rotated = Int(Double(dimensions) * (config.partialRotaryFactor ?? 1))
        return RoPEDescription(
            theta: p.ropeTheta ?? defaultTheta, dimensions: rotated, interleaved: interleaved, kind: kind,
            factor: p.factor, originalMaxPositionEmbeddings: p.originalMaxPositionEmbeddings,
            betaFast: p.betaFast, betaSlow: p.betaSlow, mscale: p.mscale, mscaleAllDim: p.mscaleAllDim,
            attentionFactor: p.attentionFactor, truncate: p.truncate)
    }

    /// Qwen-style layer schedule: a layer is sparse unless listed in `mlp_only_layers`
    /// or skipped by `decoder_sparse_step`.
    func qwenLayers(moe: MoEDescription) throws -> [FeedForwardDescription] {
        let step = max(config.decoderSparseStep ?? 1, 1)
        let denseOnly = Set(config.mlpOnlyLayers ?? [])
        let intermediate = config.intermediateSize
        return try (0..<layerCount).map { l in
            if !denseOnly.contains(l) && moe.expertCount > 0 && (l + 1) % step == 0 { return .moe(moe) }
            return .dense(intermediateSize: try config.require(intermediate, "intermediate_size", file: file))
        }
    }

    /// Families that select with a softmax over all experts.
    func softmaxRouter(normalize: Bool) throws -> RouterConfig {
        RouterConfig(expertCount: try expertCount, topK: try topK, scoring: .softmax, normalizeTopK: normalize)
    }

    func description(family: ArchitectureFamily, attention: AttentionDescription, rope: RoPEDescription,
                     layers: [FeedForwardDescription], names: TensorNames, tiedByDefault: Bool) throws -> ModelDescription {
        ModelDescription(
            family: family, vocabularySize: try vocabularySize, hiddenSize: try hiddenSize,
            rmsNormEpsilon: Float(config.rmsNormEps ?? 1e-6),
            tieWordEmbeddings: config.tieWordEmbeddings ?? tiedByDefault,
            maxPositionEmbeddings: config.maxPositionEmbeddings ?? 4096,
            attention: attention, rope: rope, layers: layers, names: names,
            bosTokenID: config.bosTokenId, eosTokenIDs: config.eosTokenId?.ids ?? [])
    }

    func rejectSlidingWindow() throws {
        if config.useSlidingWindow == true {
            throw CheckpointError.malformedConfig(file: file, reason: "use_sliding_window is not supported for model_type '\(config.modelType)'")
        }
    }
}
