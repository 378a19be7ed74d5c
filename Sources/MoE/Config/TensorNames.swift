/// How one family names its tensors in a checkpoint. Everything that differs between
/// families is a field here; the rest of the name is shared by all of them.
public struct TensorNames: Codable, Sendable, Equatable {
    /// The MoE block's module name: `block_sparse_moe` (Mixtral) or `mlp`.
    public var moeModule: String
    /// Per-expert projection names for gate, up and down: `w1`/`w3`/`w2` (Mixtral) or `gate_proj`/`up_proj`/`down_proj`.
    public var expertGate: String
    public var expertUp: String
    public var expertDown: String
    /// Shared expert module: `shared_expert` (Qwen2-MoE) or `shared_experts` (DeepSeek).
    public var sharedExpertModule: String?
    /// Qwen2-MoE's gate on the shared expert.
    public var sharedExpertGate: String?
    /// The router's module inside the MoE block: `gate`, or `router` (gpt-oss).
    public var routerModule: String
    /// How the checkpoint stores the experts, and so how exports write them.
    public var expertLayout: ExpertTensorLayout

    public init(moeModule: String = "mlp", expertGate: String = "gate_proj", expertUp: String = "up_proj",
                expertDown: String = "down_proj", sharedExpertModule: String? = nil, sharedExpertGate: String? = nil,
                routerModule: String = "gate", expertLayout: ExpertTensorLayout = .perExpert) {
        self.expertLayout = expertLayout
        self.moeModule = moeModule
        self.routerModule = routerModule
        self.expertGate = expertGate
        self.expertUp = expertUp
        self.expertDown = expertDown
        self.sharedExpertModule = sharedExpertModule
        self.sharedExpertGate = sharedExpertGate
    }

    public let embedding = "model.embed_tokens.weight"
    public let finalNorm = "model.norm.weight"
    public let outputHead = "lm_head.weight"

    enum CodingKeys: String, CodingKey {
        case moeModule, expertGate, expertUp, expertDown, sharedExpertModule, sharedExpertGate, routerModule, expertLayout
    }

    /// Names stored before gpt-oss have no `routerModule` (it was always `gate`); names stored
    /// before `expertLayout` existed had gpt-oss (router module `router`) as the one fused family.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let routerModule = try c.decodeIfPresent(String.self, forKey: .routerModule) ?? "gate"
        self.init(moeModule: try c.decode(String.self, forKey: .moeModule), expertGate: try c.decode(String.self, forKey: .expertGate),
                  expertUp: try c.decode(String.self, forKey: .expertUp), expertDown: try c.decode(String.self, forKey: .expertDown),
                  sharedExpertModule: try c.decodeIfPresent(String.self, forKey: .sharedExpertModule),
                  sharedExpertGate: try c.decodeIfPresent(String.self, forKey: .sharedExpertGate),
                  routerModule: routerModule,
                  expertLayout: try c.decodeIfPresent(ExpertTensorLayout.self, forKey: .expertLayout)
                      ?? (routerModule == "router" ? .fusedInterleavedGateUp : .perExpert))
    }

    public func layer(_ l: Int) -> String { "model.layers.\(l)." }

    /// `N` of a name under `model.layers.N` (a tensor or a module), nil for any other name.
    public static func layerIndex(of name: String) -> Int? {
        let parts = name.split(separator: ".", maxSplits: 3)
        return parts.count > 2 && parts[0] == "model" && parts[1] == "layers" ? Int(parts[2]) : nil
    }

    /// A tensor of the attention block, e.g. `attention(0, "q_proj.weight")`.
    public func attention(_ l: Int, _ suffix: String) -> String { layer(l) + "self_attn." + suffix }

    public func inputNorm(_ l: Int) -> String { layer(l) + "input_layernorm.weight" }
    public func postAttentionNorm(_ l: Int) -> String { layer(l) + "post_attention_layernorm.weight" }

    public func router(_ l: Int) -> String { layer(l) + moeModule + "." + routerModule + ".weight" }
    public func routerBias(_ l: Int) -> String { layer(l) + moeModule + "." + routerModule + ".bias" }
    public func correctionBias(_ l: Int) -> String { layer(l) + moeModule + "." + routerModule + ".e_score_correction_bias" }

    public func expertProjectionName(_ projection: Projection) -> String {
        switch projection {
        case .gate: return expertGate
        case .up: return expertUp
        case .down: return expertDown
        }
    }

    public func expert(_ l: Int, _ e: Int, _ projection: Projection) -> String {
        layer(l) + moeModule + ".experts.\(e)." + expertProjectionName(projection) + ".weight"
    }

    /// The bias of an expert's projection (gpt-oss).
    public func expertBias(_ l: Int, _ e: Int, _ projection: Projection) -> String {
        layer(l) + moeModule + ".experts.\(e)." + expertProjectionName(projection) + ".bias"
    }

    public func sharedExpert(_ l: Int, _ projection: Projection) -> String? {
        sharedExpertModule.map { layer(l) + moeModule + "." + $0 + "." + projection.rawValue + "_proj.weight" }
    }

    public func sharedExpertGateName(_ l: Int) -> String? {
        sharedExpertGate.map { layer(l) + moeModule + "." + $0 + ".weight" }
    }

    /// What only a multi-token-prediction layer has (DeepSeek-V3's and GLM-4.5's `nextn`
    /// layers): the projection of [norm(embedding); norm(hidden)] back to the hidden size,
    /// its two norms, and the norm before the (shared) output head.
    public func predictionProjection(_ l: Int) -> String { layer(l) + "eh_proj.weight" }
    public func predictionEmbeddingNorm(_ l: Int) -> String { layer(l) + "enorm.weight" }
    public func predictionHiddenNorm(_ l: Int) -> String { layer(l) + "hnorm.weight" }
    public func predictionHeadNorm(_ l: Int) -> String { layer(l) + "shared_head.norm.weight" }

    /// A dense (non-MoE) layer's feed-forward projection.
    public func denseMLP(_ l: Int, _ projection: Projection) -> String {
        layer(l) + "mlp." + projection.rawValue + "_proj.weight"
    }
}
