import Foundation
import Routing

/// gpt-oss: a router with bias whose top-k logits are softmaxed among themselves, experts with
/// biases and a clamped SwiGLU, attention with q/k/v/o biases and a learned sink logit per
/// head, sliding-window and full attention layers as `layer_types` lists them, YaRN RoPE.
///
/// The checkpoint fuses each layer's experts (`mlp.experts.gate_up_proj` and friends);
/// `GptOssExpertTensors` presents them under the per-expert names used here.
enum GptOss {
    static let slidingLayer = "sliding_attention"
    static let fullLayer = "full_attention"

    static func describe(_ config: HFConfig, file: String) throws -> ModelDescription {
        let common = CommonConfig(config: config, file: file)
        let layerCount = try common.layerCount
        // transformers' default when layer_types is absent: sliding on even layers, full on odd.
        let types = config.layerTypes ?? (0..<layerCount).map { $0 % 2 == 0 ? slidingLayer : fullLayer }
        guard types.count == layerCount else {
            throw config.outOfRange("layer_types", "\(types.count) entries", "one entry per layer (num_hidden_layers \(layerCount))", file: file)
        }
        if let unknown = types.first(where: { $0 != slidingLayer && $0 != fullLayer }) {
            throw CheckpointError.malformedConfig(file: file, reason: "layer_types entry '\(unknown)' is not '\(slidingLayer)' or '\(fullLayer)'")
        }
        let slidingLayers = types.indices.filter { types[$0] == slidingLayer }
        let window = slidingLayers.isEmpty ? nil
            : try config.integer(config.slidingWindow, "sliding_window", in: 1...ConfigLimits.positions, file: file)
        let bias = config.attentionBias ?? true
        var attention = try common.groupedAttention(qkvBias: bias, qkNorm: .none, slidingWindow: window)
        attention.outputBias = bias
        attention.sinks = true
        attention.slidingWindowLayers = slidingLayers

        // Softmax over the top-k logits alone equals the softmax over all experts renormalised
        // over the chosen ones (the full denominator cancels), so this is the Mixtral router,
        // with the router bias part of the logits.
        let router = try common.softmaxRouter(normalize: true)
        let alpha = try config.real(config.swigluAlpha, "swiglu_alpha", .positive, file: file) ?? 1.702
        let limit = try config.real(config.swigluLimit, "swiglu_limit", .positive, file: file) ?? 7
        let moe = MoEDescription(
            router: router, expertIntermediateSize: try common.width(config.intermediateSize, "intermediate_size"),
            sharedExpert: nil, routerBias: true,
            expertFunction: ExpertFunction(activation: .clampedSwiGLU(alpha: Float(alpha), limit: Float(limit)), hasBias: true))
        return try common.description(
            family: .gptOss, attention: attention, rope: try common.rope(dimensions: try common.headDim, defaultTheta: 150_000),
            layers: Array(repeating: .moe(moe), count: layerCount),
            names: TensorNames(routerModule: "router", expertLayout: .fusedInterleavedGateUp), tiedByDefault: false, defaultEpsilon: 1e-5)
    }
}
