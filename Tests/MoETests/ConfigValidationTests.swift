import Foundation
import XCTest
@testable import MoE

/// Every config.json key a family reads, set out of range in a copy of a fixture's config:
/// each must be refused with a `ConfigError` naming the file and that key, by
/// `Architectures.describe` and by loading the checkpoint; none may trap.
final class ConfigValidationTests: XCTestCase {
    struct Mutation {
        var fixture: String
        /// A key of config.json, or "object.key" inside one of its objects.
        var key: String
        var value: Any
        /// The key the error must name; `key` when nil.
        var reported: String? = nil
        /// In range on its own, refused only once compared with the tensors.
        var byTensors = false
    }

    /// Keys every family reads, with values outside their range.
    static var commonKeys: [(key: String, values: [Any])] { [
        ("vocab_size", [0, -1, 1 << 30]),
        ("hidden_size", [0, -64, 1 << 40]),
        ("num_hidden_layers", [0, -1, 100_000]),
        ("num_attention_heads", [0, -4, 1 << 20]),
        ("num_experts_per_tok", [0, -1, 9]),
        ("rms_norm_eps", [0, -1e-6, 1e-50, 1e300]),
        ("rope_parameters.rope_theta", [0, -10_000.0]),
        ("max_position_embeddings", [0, -1]),
    ] }

    static let families = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3", "glm4_moe"]
    /// Each fixture's expert count key.
    static let expertKey = ["mixtral": "num_local_experts", "qwen2_moe": "num_experts", "qwen3_moe": "num_local_experts",
                            "olmoe": "num_experts", "deepseek_v3": "n_routed_experts", "glm4_moe": "n_routed_experts"]

    static var mutations: [Mutation] {
        var list = [Mutation]()
        for family in families {
            for (key, values) in commonKeys {
                list += values.map { Mutation(fixture: family, key: key, value: $0) }
            }
            list += [0, -8, 100_000].map { Mutation(fixture: family, key: expertKey[family]!, value: $0) }
        }
        // Grouped-query attention (all but DeepSeek): 4 query heads.
        for family in ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"] {
            list += [0, -2, 3, 8].map { Mutation(fixture: family, key: "num_key_value_heads", value: $0) }
            list += [0, -16, 15].map { Mutation(fixture: family, key: "head_dim", value: $0) }
            list.append(Mutation(fixture: family, key: "partial_rotary_factor", value: 0))
            list.append(Mutation(fixture: family, key: "partial_rotary_factor", value: 1.5))
        }
        // GLM-4.5: grouped-query attention rotating half of each 16-dimension head (the factor
        // inside rope_parameters, as transformers 5 saves it); DeepSeek's router on 2 groups of
        // 4 experts, keeping 1 group; one multi-token-prediction layer.
        list += [0, -2, 3, 8].map { Mutation(fixture: "glm4_moe", key: "num_key_value_heads", value: $0) }
        list += [0, -16].map { Mutation(fixture: "glm4_moe", key: "head_dim", value: $0) }
        list += [
            // 15 × 0.5 rotates 7 dimensions: RoPE needs pairs.
            Mutation(fixture: "glm4_moe", key: "head_dim", value: 15, reported: "head_dim × rope_parameters.partial_rotary_factor"),
            Mutation(fixture: "glm4_moe", key: "rope_parameters.partial_rotary_factor", value: 0),
            Mutation(fixture: "glm4_moe", key: "rope_parameters.partial_rotary_factor", value: 1.5),
            Mutation(fixture: "glm4_moe", key: "partial_rotary_factor", value: -0.5),
            Mutation(fixture: "glm4_moe", key: "n_group", value: 0),
            Mutation(fixture: "glm4_moe", key: "n_group", value: 3),
            Mutation(fixture: "glm4_moe", key: "n_group", value: 16),
            Mutation(fixture: "glm4_moe", key: "topk_group", value: 0),
            Mutation(fixture: "glm4_moe", key: "topk_group", value: 3),
            // topk_group 1 of 2 groups of 4: only 4 experts are reachable.
            Mutation(fixture: "glm4_moe", key: "num_experts_per_tok", value: 5),
            Mutation(fixture: "glm4_moe", key: "routed_scaling_factor", value: 0),
            Mutation(fixture: "glm4_moe", key: "n_shared_experts", value: -1),
            Mutation(fixture: "glm4_moe", key: "first_k_dense_replace", value: 3),
            Mutation(fixture: "glm4_moe", key: "first_k_dense_replace", value: -1),
            Mutation(fixture: "glm4_moe", key: "moe_intermediate_size", value: 0),
            Mutation(fixture: "glm4_moe", key: "intermediate_size", value: -64),
            Mutation(fixture: "glm4_moe", key: "num_nextn_predict_layers", value: -1),
        ]
        // Without head_dim, hidden_size // num_attention_heads must be at least one.
        list.append(Mutation(fixture: "olmoe", key: "num_attention_heads", value: 128))
        list += [
            Mutation(fixture: "mixtral", key: "intermediate_size", value: 0),
            Mutation(fixture: "mixtral", key: "sliding_window", value: 0),
            Mutation(fixture: "mixtral", key: "sliding_window", value: -5),
            Mutation(fixture: "olmoe", key: "intermediate_size", value: -1),
            Mutation(fixture: "olmoe", key: "clip_qkv", value: 0),
            Mutation(fixture: "olmoe", key: "clip_qkv", value: -1.5),
            Mutation(fixture: "qwen2_moe", key: "moe_intermediate_size", value: 0),
            Mutation(fixture: "qwen2_moe", key: "shared_expert_intermediate_size", value: -96),
            Mutation(fixture: "qwen2_moe", key: "decoder_sparse_step", value: 0),
            Mutation(fixture: "qwen2_moe", key: "decoder_sparse_step", value: -1),
            Mutation(fixture: "qwen2_moe", key: "mlp_only_layers", value: [5]),
            Mutation(fixture: "qwen2_moe", key: "mlp_only_layers", value: [-1]),
            Mutation(fixture: "qwen3_moe", key: "moe_intermediate_size", value: -48),
            Mutation(fixture: "deepseek_v3", key: "qk_nope_head_dim", value: 0),
            Mutation(fixture: "deepseek_v3", key: "qk_rope_head_dim", value: 0),
            Mutation(fixture: "deepseek_v3", key: "qk_rope_head_dim", value: 7),
            Mutation(fixture: "deepseek_v3", key: "v_head_dim", value: -16),
            Mutation(fixture: "deepseek_v3", key: "kv_lora_rank", value: 0),
            Mutation(fixture: "deepseek_v3", key: "q_lora_rank", value: 0),
            Mutation(fixture: "deepseek_v3", key: "moe_intermediate_size", value: 0),
            Mutation(fixture: "deepseek_v3", key: "intermediate_size", value: 0),
            Mutation(fixture: "deepseek_v3", key: "n_group", value: 0),
            Mutation(fixture: "deepseek_v3", key: "n_group", value: 3),
            Mutation(fixture: "deepseek_v3", key: "n_group", value: 16),
            Mutation(fixture: "deepseek_v3", key: "topk_group", value: 0),
            Mutation(fixture: "deepseek_v3", key: "topk_group", value: 5),
            // 4 groups of 2 experts, keeping topk_group 2 of them: only 4 of the 8 experts are reachable.
            Mutation(fixture: "deepseek_v3", key: "num_experts_per_tok", value: 5),
            Mutation(fixture: "deepseek_v3", key: "routed_scaling_factor", value: 0),
            Mutation(fixture: "deepseek_v3", key: "routed_scaling_factor", value: -2.5),
            Mutation(fixture: "deepseek_v3", key: "n_shared_experts", value: -1),
            Mutation(fixture: "deepseek_v3", key: "first_k_dense_replace", value: -1),
            Mutation(fixture: "deepseek_v3", key: "first_k_dense_replace", value: 3),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.factor", value: 0),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.factor", value: -4),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.beta_fast", value: 0),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.beta_slow", value: -1),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.original_max_position_embeddings", value: 0),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.rope_theta", value: 1),
            Mutation(fixture: "deepseek_v3_yarn", key: "rope_parameters.attention_factor", value: 0),
        ]
        // Tensor shapes pin these down: in range on their own, but not this checkpoint's.
        list += [
            Mutation(fixture: "mixtral", key: "vocab_size", value: 511, byTensors: true),
            Mutation(fixture: "mixtral", key: "num_hidden_layers", value: 3, byTensors: true),
            Mutation(fixture: "deepseek_v3", key: "num_hidden_layers", value: 1000, byTensors: true),
            Mutation(fixture: "olmoe", key: "vocab_size", value: 1024, byTensors: true),
            Mutation(fixture: "qwen3_moe", key: "vocab_size", value: 500, byTensors: true),
            Mutation(fixture: "deepseek_v3", key: "vocab_size", value: 256, byTensors: true),
            Mutation(fixture: "mixtral", key: "num_key_value_heads", value: 4, reported: "num_key_value_heads × head_dim", byTensors: true),
            Mutation(fixture: "qwen3_moe", key: "head_dim", value: 16, reported: "num_attention_heads × head_dim", byTensors: true),
        ]
        return list
    }

    /// A temporary checkpoint folder: the fixture's tensors (linked) and a mutated config.json.
    static func mutatedCheckpoint(_ mutation: Mutation, in root: URL, index: Int) throws -> URL {
        let source = Fixtures.url(mutation.fixture)
        let folder = root.appendingPathComponent("\(index)-\(mutation.fixture)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "config.json" {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name),
                                                       withDestinationURL: source.appendingPathComponent(name))
        }
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as? [String: Any])
        let parts = mutation.key.split(separator: ".").map(String.init)
        if parts.count == 2 {
            var inner = try XCTUnwrap(json[parts[0]] as? [String: Any], mutation.key)
            inner[parts[1]] = mutation.value
            json[parts[0]] = inner
        } else {
            json[mutation.key] = mutation.value
        }
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("config.json"))
        return folder
    }

    func testEveryOutOfRangeValueIsATypedErrorNamingTheKey() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("config-validation-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let mutations = Self.mutations
        var refused = 0
        for (index, mutation) in mutations.enumerated() {
            let label = "\(mutation.fixture): \(mutation.key) = \(mutation.value)"
            let folder = try Self.mutatedCheckpoint(mutation, in: root, index: index)
            let configFile = folder.appendingPathComponent("config.json")
            let expectedKey = mutation.reported ?? mutation.key
            func check(_ error: any Error, _ what: String) {
                guard let configError = error as? ConfigError else {
                    return XCTFail("\(label): \(what) threw \(type(of: error)) \(error), not a ConfigError")
                }
                XCTAssertEqual(configError.key, expectedKey, "\(label): \(what): \(configError)")
                let text = configError.description
                XCTAssertTrue(text.contains(configFile.path), "\(label): \(what): '\(text)' does not name the file")
                XCTAssertTrue(text.contains("allowed") || text.contains("tensor"), "\(label): \(what): '\(text)' gives no range")
            }
            let data = try Data(contentsOf: configFile)
            let describedOK: Bool
            do {
                _ = try Architectures.describe(configData: data, file: configFile.path)
                describedOK = true
            } catch {
                check(error, "describe")
                describedOK = false
            }
            // Keys that tensors pin down pass describe and fail when the tensors are read.
            XCTAssertEqual(describedOK, mutation.byTensors, "\(label): describe")
            XCTAssertThrowsError(try MoEModel(directory: folder), label) { check($0, "load") }
            refused += 1
        }
        XCTAssertEqual(refused, mutations.count)
        print("config validation: \(refused) out-of-range values over \(Set(mutations.map(\.key)).count) keys refused with the key named")
    }

    /// Values at the edges of the ranges are accepted (so the checks are not stricter than the models).
    func testEdgeValuesAreAccepted() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("config-edges-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let accepted: [Mutation] = [
            Mutation(fixture: "mixtral", key: "num_experts_per_tok", value: 8),
            Mutation(fixture: "mixtral", key: "num_experts_per_tok", value: 1),
            Mutation(fixture: "olmoe", key: "num_key_value_heads", value: 1),
            Mutation(fixture: "olmoe", key: "partial_rotary_factor", value: 0.5),
            Mutation(fixture: "qwen2_moe", key: "shared_expert_intermediate_size", value: 0),
            Mutation(fixture: "qwen2_moe", key: "mlp_only_layers", value: [1]),
            Mutation(fixture: "qwen3_moe", key: "rms_norm_eps", value: 1e-30),
            Mutation(fixture: "deepseek_v3", key: "topk_group", value: 4),
            Mutation(fixture: "deepseek_v3", key: "n_group", value: 2),
            Mutation(fixture: "deepseek_v3", key: "first_k_dense_replace", value: 0),
            Mutation(fixture: "glm4_moe", key: "topk_group", value: 2),
            Mutation(fixture: "glm4_moe", key: "n_group", value: 1),
            Mutation(fixture: "glm4_moe", key: "num_nextn_predict_layers", value: 0),
            Mutation(fixture: "glm4_moe", key: "partial_rotary_factor", value: 1),
        ]
        for (index, mutation) in accepted.enumerated() {
            let folder = try Self.mutatedCheckpoint(mutation, in: root, index: index)
            let data = try Data(contentsOf: folder.appendingPathComponent("config.json"))
            XCTAssertNoThrow(try Architectures.describe(configData: data, file: "config.json"), "\(mutation.fixture): \(mutation.key) = \(mutation.value)")
        }
    }

    /// A seeded fuzz run: random values (out of range, at the edges, of the wrong type, null)
    /// for random keys of every family's config. Each case must load and run, or fail with a
    /// typed error; a trap would end the test process. Prints the counts.
    func testSeededConfigFuzzNeverTraps() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("config-fuzz-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var random = SplitMix64(seed: 16)
        let fixtures = Self.families + ["deepseek_v3_yarn", "deepseek_v3_nolora", "gpt_oss"]
        let extraKeys = ["head_dim", "num_key_value_heads", "partial_rotary_factor", "sliding_window", "decoder_sparse_step",
                         "mlp_only_layers", "clip_qkv", "rope_theta", "rope_parameters.factor", "rope_parameters.rope_type"]
        func value() -> Any {
            switch random.next() % 12 {
            case 0: return Int(random.next() % 7) - 3
            case 1: return 0
            case 2: return 1
            case 3: return Int(Int32.max)
            case 4: return Int.max
            case 5: return -Double(random.next() % 1000) / 7
            case 6: return Double(random.next() % 1000) / 997
            case 7: return [1e-320, 1e-45, 1e300, -1e300, 0.5, 2.5][Int(random.next() % 6)]
            case 8: return "x"
            case 9: return NSNull()
            case 10: return [Int(random.next() % 5) - 1]
            default: return random.next() % 2 == 0
            }
        }
        var counts = (cases: 0, accepted: 0, configErrors: 0, otherTypedErrors: 0, nonFinite: 0)
        for index in 0..<400 {
            let fixture = fixtures[Int(random.next() % UInt64(fixtures.count))]
            let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.url("\(fixture)/config.json"))) as? [String: Any])
            let keys = config.keys.sorted() + extraKeys
            let key = keys[Int(random.next() % UInt64(keys.count))]
            let mutation = Mutation(fixture: fixture, key: key, value: value())
            let folder = try Self.mutatedCheckpoint(mutation, in: root, index: index)
            counts.cases += 1
            do {
                let model = try MoEModel(directory: folder)
                _ = try model.logits([1, 2, 3]).checkedFinite()
                counts.accepted += 1
            } catch is ConfigError {
                counts.configErrors += 1
            } catch let ModelError.nonFiniteLogits(position, token, value) {
                counts.nonFinite += 1
                print("non-finite logits: \(fixture): \(key) = \(mutation.value): \(value) at \(position), \(token)")
            } catch is CheckpointError, is ModelError {
                counts.otherTypedErrors += 1
            } catch {
                XCTFail("\(fixture): \(key) = \(mutation.value): untyped error \(type(of: error)): \(error)")
            }
        }
        print("config fuzz (seed 16): \(counts.cases) cases, \(counts.accepted) accepted and run, \(counts.configErrors) ConfigError, "
              + "\(counts.otherTypedErrors) other typed errors (wrong type, missing key, shape), \(counts.nonFinite) non-finite logits refused, 0 traps")
        XCTAssertEqual(counts.cases, counts.accepted + counts.configErrors + counts.otherTypedErrors + counts.nonFinite)
        XCTAssertGreaterThan(counts.configErrors, 0)
        XCTAssertGreaterThan(counts.accepted, 0)
    }

    func testNonFiniteLogitsAreAnError() throws {
        let finite = Matrix(rows: 2, columns: 3, values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try finite.checkedFinite(), finite)
        // Large values whose sum overflows are still numbers.
        let large = Matrix(rows: 1, columns: 3, values: [.greatestFiniteMagnitude, .greatestFiniteMagnitude, 1])
        XCTAssertEqual(try large.checkedFinite(), large)
        for bad: Float in [.nan, .infinity, -.infinity] {
            let matrix = Matrix(rows: 2, columns: 3, values: [1, 2, 3, 4, 5, bad])
            XCTAssertThrowsError(try matrix.checkedFinite()) { error in
                guard case let .nonFiniteLogits(position, token, _)? = error as? ModelError else { return XCTFail("\(error)") }
                XCTAssertEqual(position, 1)
                XCTAssertEqual(token, 2)
            }
        }
    }
}

/// A small seeded generator, so the fuzz run is the same every time.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

}

extension ConfigValidationTests {
    /// A checkpoint whose final norm is NaN: generation refuses to
    /// sample from its logits instead of answering some token.
    func testGenerationRefusesNonFiniteLogits() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: Fixtures.url("qwen3_moe"), to: folder)
        let weights = folder.appendingPathComponent("model.safetensors")
        let file = try SafetensorsFile(path: weights.path)
        var writer = SafetensorsWriter()
        for name in file.tensors.keys.sorted() {
            let info = try file.info(name)
            var bytes = Array(try file.rawBytes(name))
            if name == "model.norm.weight" {
                let nan: [UInt8] = switch info.dtype { case .f32: [0x00, 0x00, 0xC0, 0x7F]; case .bf16: [0xC0, 0x7F]; default: [0x00, 0x7E] }
                bytes = (0..<info.elementCount).flatMap { _ in nan }
            }
            writer.add(name, dtype: info.dtype, shape: info.shape, bytes: bytes)
        }
        try FileManager.default.removeItem(at: weights)
        try writer.write(to: weights)
        let model = try MoEModel(directory: folder)
        XCTAssertThrowsError(try Generator(model: model).generate(prompt: [1, 2, 3], maxTokens: 2)) {
            guard case .nonFiniteLogits? = $0 as? ModelError else { return XCTFail("\($0)") }
        }
    }
}
