import MoE

/// How llama.cpp knows a MoEKit family: its architecture name, the hyper-parameter keys it
/// reads (gguf-py `constants.py`, `Keys.LLM` and `Keys.Attention`), and the tensor names
/// (`TENSOR_NAMES`) that the checkpoint's tensors become.
struct GGUFArchitecture {
    /// `general.architecture`, the prefix of every hyper-parameter key.
    let name: String
    /// llama.cpp's `llama` graph (which Mixtral uses) applies RoPE to adjacent pairs, so
    /// convert_hf_to_gguf.py reorders the rows of q and k within each head from Hugging
    /// Face's halves layout to interleaved pairs; the NeoX-style families need nothing.
    let permutesQueryKey: Bool
    /// Whether llama.cpp's graph for this architecture renormalises the top-k routing
    /// weights (it hard-codes this per architecture rather than reading it).
    let renormalizesTopK: Bool

    static func of(_ description: ModelDescription) throws(GGUFExportError) -> GGUFArchitecture {
        switch description.family {
        case .qwen3Moe: return GGUFArchitecture(name: "qwen3moe", permutesQueryKey: false, renormalizesTopK: true)
        case .qwen2Moe: return GGUFArchitecture(name: "qwen2moe", permutesQueryKey: false, renormalizesTopK: false)
        case .olmoe: return GGUFArchitecture(name: "olmoe", permutesQueryKey: false, renormalizesTopK: false)
        case .mixtral: return GGUFArchitecture(name: "llama", permutesQueryKey: true, renormalizesTopK: true)
        case .deepseekV3:
            // deepseek2 reads renormalisation from expert_weights_norm; MLA is split and keyed
            // as GGUFLatentAttention describes.
            let normalizes = description.moeLayerIndices.first.flatMap { description.layers[$0].moe }?.router.normalizeTopK ?? true
            return GGUFArchitecture(name: "deepseek2", permutesQueryKey: false, renormalizesTopK: normalizes)
        case .glm4Moe:
            // llama.cpp's glm4moe reads renormalisation from expert_weights_norm, so it always matches.
            let normalizes = description.moeLayerIndices.first.flatMap { description.layers[$0].moe }?.router.normalizeTopK ?? true
            return GGUFArchitecture(name: "glm4moe", permutesQueryKey: false, renormalizesTopK: normalizes)
        case .gptOss:
            // llama.cpp's gpt-oss graph: softmax over the chosen experts' logits (the router
            // bias included), fused expert tensors with biases, sinks, and sliding-window
            // attention on the even layers, full attention on the odd ones (its default
            // sliding_window_pattern 2, which convert_hf_to_gguf.py relies on too).
            let layers = description.attention.slidingWindowLayers ?? Array(0..<description.layerCount)
            guard description.attention.slidingWindow == nil || layers == Array(stride(from: 0, to: description.layerCount, by: 2)) else {
                throw .unsupportedFamily(description.family.rawValue, reason: "llama.cpp's gpt-oss graph slides the window on the even layers and attends fully on the odd ones; this model slides it on layers \(layers)")
            }
            return GGUFArchitecture(name: "gpt-oss", permutesQueryKey: false, renormalizesTopK: true)
        }
    }

    /// llama.cpp's `LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX` and `_SIGMOID` (gguf-py `ExpertGatingFuncType`).
    static let softmaxGating: UInt32 = 1
    static let sigmoidGating: UInt32 = 2

    /// The keys of DeepSeek's router that llama.cpp's glm4moe and deepseek2 read (gguf-py `Keys.LLM`):
    /// the gating function, renormalisation and scale, shared experts, leading dense layers and,
    /// when the router is group-limited and the plan's count still splits into groups of two
    /// or more (as the Hugging Face export's config keeps it), the groups. No
    /// `nextn_predict_layers`: the multi-token-prediction layer is not written, so every
    /// block is run.
    func groupLimitedRouterParameters(_ d: ModelDescription, expertCount: Int) -> [(String, GGUFValue)] {
        guard let moe = d.moeLayerIndices.first.flatMap({ d.layers[$0].moe }) else { return [] }
        let router = moe.router
        var out: [(String, GGUFValue)] = [
            ("leading_dense_block_count", .uint32(UInt32(d.layers.prefix { $0.moe == nil }.count))),
            ("expert_shared_count", .uint32(UInt32((moe.sharedExpert?.intermediateSize ?? 0) / moe.expertIntermediateSize))),
            ("expert_gating_func", .uint32(router.scoring == .sigmoid ? Self.sigmoidGating : Self.softmaxGating)),
            ("expert_weights_scale", .float32(router.scalingFactor)),
            ("expert_weights_norm", .bool(router.normalizeTopK)),
        ]
        if router.groupCount > 1, router.topGroupCount < router.groupCount,
           expertCount % router.groupCount == 0, expertCount / router.groupCount >= 2 {
            out.append(("expert_group_count", .uint32(UInt32(router.groupCount))))
            out.append(("expert_group_used_count", .uint32(UInt32(router.topGroupCount))))
        }
        return out
    }

    /// The hyper-parameter metadata, under `name.`: what llama.cpp's loader reads for the family.
    /// `expertCount` is the plan's experts per layer; `denseWidth` is config.json's
    /// `intermediate_size` when it has one.
    func hyperParameters(_ d: ModelDescription, expertCount: Int, denseWidth: Int?) -> [(String, GGUFValue)] {
        let a = d.attention
        let moe = d.moeLayerIndices.first.flatMap { d.layers[$0].moe }
        var out: [(String, GGUFValue)] = [
            ("block_count", .uint32(UInt32(d.layerCount))),
            ("context_length", .uint32(UInt32(d.maxPositionEmbeddings))),
            ("embedding_length", .uint32(UInt32(d.hiddenSize))),
            ("feed_forward_length", .uint32(UInt32(denseWidth ?? moe?.expertIntermediateSize ?? 0))),
            ("attention.head_count", .uint32(UInt32(a.headCount))),
            ("attention.head_count_kv", .uint32(UInt32(a.keyValueHeadCount))),
            ("attention.key_length", .uint32(UInt32(a.queryKeyHeadDim))),
            ("attention.value_length", .uint32(UInt32(a.valueHeadDim))),
            ("rope.freq_base", .float32(Float(d.rope.theta))),
            ("rope.dimension_count", .uint32(UInt32(d.rope.dimensions))),
            ("attention.layer_norm_rms_epsilon", .float32(d.rmsNormEpsilon)),
            ("vocab_size", .uint32(UInt32(d.vocabularySize))),
        ]
        if let moe {
            out.append(("expert_count", .uint32(UInt32(expertCount))))
            out.append(("expert_used_count", .uint32(UInt32(moe.topK))))
            out.append(("expert_feed_forward_length", .uint32(UInt32(moe.expertIntermediateSize))))
            if let shared = moe.sharedExpert {
                out.append(("expert_shared_feed_forward_length", .uint32(UInt32(shared.intermediateSize))))
            }
        }
        if let clip = a.clipQKV { out.append(("attention.clamp_kqv", .float32(clip))) }
        if d.family == .glm4Moe || d.family == .deepseekV3 { out += groupLimitedRouterParameters(d, expertCount: expertCount) }
        if let latent = a.latent { out = Self.replacing(out, with: latentAttentionParameters(d, latent)) }
        if d.family == .gptOss, let window = a.slidingWindow { out.append(("attention.sliding_window", .uint32(UInt32(window)))) }
        switch d.rope.kind {
        case "linear":
            out.append(("rope.scaling.type", .string("linear")))
            out.append(("rope.scaling.factor", .float32(Float(d.rope.factor ?? 1))))
        case "yarn":
            out.append(("rope.scaling.type", .string("yarn")))
            out.append(("rope.scaling.factor", .float32(Float(d.rope.factor ?? 1))))
            if let original = d.rope.originalMaxPositionEmbeddings {
                out.append(("rope.scaling.original_context_length", .uint32(UInt32(original))))
            }
            if let fast = d.rope.betaFast { out.append(("rope.scaling.yarn_beta_fast", .float32(Float(fast)))) }
            if let slow = d.rope.betaSlow { out.append(("rope.scaling.yarn_beta_slow", .float32(Float(slow)))) }
            // deepseek2 divides this key by 0.1 when it reads it (convert_hf_to_gguf.py writes
            // 0.1·mscale_all_dim) and scales attention by the squared YaRN mscale from it.
            if d.family == .deepseekV3, let all = d.rope.mscaleAllDim {
                out.append(("rope.scaling.yarn_log_multiplier", .float32(Float(0.1 * all))))
            }
        default: break
        }
        return out.map { ("\(name).\($0.0)", $0.1) }
    }

    /// deepseek2's attention keys: MLA runs as one key-value head of the latent (key length
    /// rank + rope, value length rank), with the per-head sizes under `*_mla`. A model without
    /// a query LoRA writes q_lora_rank 0 (the loader requires the key and takes 0 as "plain q").
    func latentAttentionParameters(_ d: ModelDescription, _ latent: LatentAttentionDescription) -> [(String, GGUFValue)] {
        let rank = latent.keyValueLoraRank
        return [
            ("attention.head_count_kv", .uint32(1)),
            ("attention.key_length", .uint32(UInt32(rank + latent.ropeHeadDim))),
            ("attention.value_length", .uint32(UInt32(rank))),
            ("attention.key_length_mla", .uint32(UInt32(latent.noPositionHeadDim + latent.ropeHeadDim))),
            ("attention.value_length_mla", .uint32(UInt32(d.attention.valueHeadDim))),
            ("attention.kv_lora_rank", .uint32(UInt32(rank))),
            ("attention.q_lora_rank", .uint32(UInt32(latent.queryLoraRank ?? 0))),
            ("rope.dimension_count", .uint32(UInt32(latent.ropeHeadDim))),
        ]
    }

    /// `entries` with the values of `replacements` for keys they share, and the others appended.
    static func replacing(_ entries: [(String, GGUFValue)], with replacements: [(String, GGUFValue)]) -> [(String, GGUFValue)] {
        let new = Dictionary(replacements, uniquingKeysWith: { $1 })
        let kept = entries.map { ($0.0, new[$0.0] ?? $0.1) }
        let present = Set(entries.map(\.0))
        return kept + replacements.filter { !present.contains($0.0) }
    }

    /// llama.cpp's name for a dense (non-expert) checkpoint tensor in this architecture's graph.
    /// glm4moe and gpt-oss have no `ffn_norm`: gguf-py maps `post_attention_layernorm` to
    /// their `post_attention_norm`, which those graphs apply before the feed-forward.
    func tensorName(_ checkpointName: String, names: TensorNames) -> String? {
        let generic = Self.tensorName(checkpointName, names: names)
        if name == "glm4moe" || name == "gpt-oss", let generic, generic.hasSuffix(".ffn_norm.weight") {
            return generic.replacingOccurrences(of: ".ffn_norm.weight", with: ".post_attention_norm.weight")
        }
        return generic
    }

    /// llama.cpp's name for a dense (non-expert) checkpoint tensor, or nil when llama.cpp's
    /// graph for the family has no place for it.
    static func tensorName(_ checkpointName: String, names: TensorNames) -> String? {
        switch checkpointName {
        case names.embedding: return "token_embd.weight"
        case names.finalNorm: return "output_norm.weight"
        case names.outputHead: return "output.weight"
        default: break
        }
        let parts = checkpointName.split(separator: ".", maxSplits: 3).map(String.init)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let l = Int(parts[2]) else { return nil }
        let rest = parts[3]
        let block = "blk.\(l)."
        if rest == String(names.router(l).dropFirst(names.layer(l).count)) { return block + "ffn_gate_inp.weight" }
        if rest == String(names.correctionBias(l).dropFirst(names.layer(l).count)) { return block + "exp_probs_b.bias" }
        if rest == String(names.routerBias(l).dropFirst(names.layer(l).count)) { return block + "ffn_gate_inp.bias" }
        if let gate = names.sharedExpertGateName(l), checkpointName == gate { return block + "ffn_gate_inp_shexp.weight" }
        for p in Projection.allCases {
            if let shared = names.sharedExpert(l, p), checkpointName == shared { return block + "ffn_\(p.rawValue)_shexp.weight" }
            if checkpointName == names.denseMLP(l, p) { return block + "ffn_\(p.rawValue).weight" }
        }
        let local: [String: String] = [
            "input_layernorm.weight": "attn_norm.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight",
            "self_attn.k_proj.weight": "attn_k.weight",
            "self_attn.v_proj.weight": "attn_v.weight",
            "self_attn.o_proj.weight": "attn_output.weight",
            "self_attn.q_proj.bias": "attn_q.bias",
            "self_attn.k_proj.bias": "attn_k.bias",
            "self_attn.v_proj.bias": "attn_v.bias",
            "self_attn.o_proj.bias": "attn_output.bias",
            "self_attn.sinks": "attn_sinks.weight",
            "self_attn.q_norm.weight": "attn_q_norm.weight",
            "self_attn.k_norm.weight": "attn_k_norm.weight",
            // DeepSeek's latent attention (kv_b_proj is split, see GGUFLatentAttention).
            "self_attn.q_a_proj.weight": "attn_q_a.weight",
            "self_attn.q_a_layernorm.weight": "attn_q_a_norm.weight",
            "self_attn.q_b_proj.weight": "attn_q_b.weight",
            "self_attn.kv_a_proj_with_mqa.weight": "attn_kv_a_mqa.weight",
            "self_attn.kv_a_layernorm.weight": "attn_kv_a_norm.weight",
        ]
        return local[rest].map { block + $0 }
    }

    /// llama.cpp's name of a layer's fused expert tensor, `[experts, rows, columns]`.
    static func expertTensorName(layer: Int, _ projection: Projection) -> String {
        "blk.\(layer).ffn_\(projection.rawValue)_exps.weight"
    }

    /// llama.cpp's name of a layer's fused expert biases (gpt-oss), `[experts, rows]`.
    static func expertBiasName(layer: Int, _ projection: Projection) -> String {
        "blk.\(layer).ffn_\(projection.rawValue)_exps.bias"
    }

    /// The row order convert_hf_to_gguf.py gives q (`heads` = attention heads) or k
    /// (`heads` = key-value heads) for the `llama` graph: within each head, row `2i + j`
    /// of the result is row `j·half + i` of the checkpoint, `half` = head size / 2.
    static func interleavedRopeRows(rows: Int, heads: Int) -> [Int] {
        let headSize = rows / heads, half = headSize / 2
        var order = [Int]()
        order.reserveCapacity(rows)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 { order.append(h * headSize + j * half + i) }
            }
        }
        return order
    }
}
