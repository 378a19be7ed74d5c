import Foundation

/// The one place that says which `config.json` values a model can run with. Every family
/// reads its fields through these checks (see `CommonConfig`), so no value outside its
/// range reaches a `precondition`, an allocation sized by it, or arithmetic that turns it
/// into NaN; the error names the file, the key and the allowed range instead.
enum ConfigLimits {
    // Upper bounds far above any released model (the largest have ~100 layers, 384 experts,
    // 256k vocabularies). They keep sizes computed from the config alone (the tensor
    // inventory, byte counts) from overflowing or exhausting memory before the checkpoint
    // is compared with it.
    static let layers = 1024
    static let heads = 4096
    static let experts = 8192
    static let width = 1 << 20
    static let headDim = 1 << 16
    static let vocabulary = 1 << 24
    static let positions = 1 << 26
}

/// A test on a real-valued field, with the words the error uses for it.
struct RealRange: Sendable {
    let allowed: String
    let contains: @Sendable (Double) -> Bool

    static let positive = RealRange(allowed: "> 0 and finite") { $0 > 0 && $0.isFinite }
    static let finite = RealRange(allowed: "a finite number") { $0.isFinite }
    /// `rms_norm_eps` is used as a 32-bit float: 1e-50 would become 0 and divide by zero.
    static let positiveFloat = RealRange(allowed: "> 0 and finite as a 32-bit float (≥ \(Float.leastNormalMagnitude))") {
        Float($0) >= .leastNormalMagnitude && Float($0).isFinite
    }
    /// YaRN divides by log(rope_theta), which is 0 at 1 and negative below.
    static let aboveOne = RealRange(allowed: "> 1 and finite") { $0 > 1 && $0.isFinite }
    static let fraction = RealRange(allowed: "in (0, 1]") { $0 > 0 && $0 <= 1 }
}

extension HFConfig {
    func outOfRange(_ key: String, _ value: Any, _ allowed: String, file: String) -> ConfigError {
        .outOfRange(file: file, key: key, value: "\(value)", allowed: allowed)
    }

    /// A required integer in `range`.
    func integer(_ value: Int?, _ key: String, in range: ClosedRange<Int>, file: String) throws -> Int {
        let value = try require(value, key, file: file)
        guard range.contains(value) else { throw outOfRange(key, value, "\(range)", file: file) }
        return value
    }

    /// An optional integer, in `range` when present.
    func optionalInteger(_ value: Int?, _ key: String, in range: ClosedRange<Int>, file: String) throws -> Int? {
        guard let value else { return nil }
        return try integer(value, key, in: range, file: file)
    }

    /// An optional real number, in `range` when present.
    func real(_ value: Double?, _ key: String, _ range: RealRange, file: String) throws -> Double? {
        guard let value else { return nil }
        guard range.contains(value) else { throw outOfRange(key, value, range.allowed, file: file) }
        return value
    }

    /// The key the routed expert count was read from, for errors.
    var expertCountKey: String {
        numLocalExperts != nil ? "num_local_experts" : numExperts != nil ? "num_experts" : "n_routed_experts"
    }

    /// The object RoPE settings were read from (`rope` merges them), for errors.
    var ropeKeyPrefix: String { ropeParameters != nil ? "rope_parameters" : "rope_scaling" }

    /// The key `rope.ropeTheta` was read from.
    var ropeThetaKey: String {
        if ropeParameters?.ropeTheta != nil { return "rope_parameters.rope_theta" }
        if ropeParameters == nil, ropeScaling?.ropeTheta != nil { return "rope_scaling.rope_theta" }
        return "rope_theta"
    }

    /// Checks the RoPE scaling parameters that `RotaryEmbedding` divides by or takes the log of.
    func checkRopeScaling(_ p: RopeParameters, file: String) throws {
        let prefix = ropeKeyPrefix
        _ = try real(p.factor, "\(prefix).factor", .positive, file: file)
        _ = try optionalInteger(p.originalMaxPositionEmbeddings, "\(prefix).original_max_position_embeddings",
                                in: 1...ConfigLimits.positions, file: file)
        _ = try real(p.betaFast, "\(prefix).beta_fast", .positive, file: file)
        _ = try real(p.betaSlow, "\(prefix).beta_slow", .positive, file: file)
        _ = try real(p.mscale, "\(prefix).mscale", .finite, file: file)
        _ = try real(p.mscaleAllDim, "\(prefix).mscale_all_dim", .finite, file: file)
        _ = try real(p.attentionFactor, "\(prefix).attention_factor", .positive, file: file)
    }
}

extension ModelDescription {
    /// The config keys that tensor shapes pin down, compared with the checkpoint's tensors
    /// (`shape` gives a tensor's shape, nil when absent), so that a wrong `vocab_size` is
    /// reported as the config key it is rather than as a tensor of the wrong shape.
    public func checkConfigAgainstTensors(file: String, shape: (String) throws -> [Int]?) throws {
        if let embedding = try shape(names.embedding), embedding.count == 2 {
            guard embedding[0] == vocabularySize else {
                throw ConfigError.tensorMismatch(file: file, key: "vocab_size", value: vocabularySize, tensor: names.embedding, shape: embedding)
            }
            guard embedding[1] == hiddenSize else {
                throw ConfigError.tensorMismatch(file: file, key: "hidden_size", value: hiddenSize, tensor: names.embedding, shape: embedding)
            }
        }
        // Checked before anything walks every layer's tensors: a layer count far above the
        // checkpoint's would otherwise build a huge tensor inventory first.
        let lastNorm = names.inputNorm(layerCount - 1)
        if layerCount > 0, try shape(lastNorm) == nil {
            throw ConfigError.tensorMissing(file: file, key: "num_hidden_layers", value: layerCount, tensor: lastNorm)
        }
        guard attention.latent == nil else { return }
        let query = names.attention(0, "q_proj.weight")
        if let q = try shape(query), q.count == 2, q[0] != attention.headCount * attention.queryKeyHeadDim {
            throw ConfigError.tensorMismatch(file: file, key: "num_attention_heads × head_dim",
                                             value: attention.headCount * attention.queryKeyHeadDim, tensor: query, shape: q)
        }
        let key = names.attention(0, "k_proj.weight")
        if let k = try shape(key), k.count == 2, k[0] != attention.keyValueHeadCount * attention.queryKeyHeadDim {
            throw ConfigError.tensorMismatch(file: file, key: "num_key_value_heads × head_dim",
                                             value: attention.keyValueHeadCount * attention.queryKeyHeadDim, tensor: key, shape: k)
        }
    }
}
