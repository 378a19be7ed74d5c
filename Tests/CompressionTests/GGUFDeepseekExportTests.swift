import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE

/// GGUF exports of the deepseek_v3 fixtures as llama.cpp's deepseek2 (Tests/Fixtures/deepseek_v3:
/// 3 layers, the first dense; 8 experts in 4 groups, topk_group 2, one shared expert; MLA with
/// q_lora_rank 32, kv_lora_rank 32, nope 16, rope 8, v 16), read back.
final class GGUFDeepseekExportTests: PlanFixtureCase {
    static let model = fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-deepseek-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// The fixture with the default model's tokenizer copied in (the fixtures have none).
    func importWithTokenizer(_ fixture: String) throws {
        let folder = directory.appendingPathComponent("ckpt-\(fixture)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("\(fixture)/\(file)"), to: folder.appendingPathComponent(file))
        }
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: Self.model.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        let storeURL = directory.appendingPathComponent("store-\(fixture)")
        _ = try StoreImporter(checkpoint: folder, store: storeURL).run()
        store = try ExpertStore(url: storeURL, readOnly: false)
    }

    func export(_ plan: CompressionPlan?) throws -> (GGUFExportSummary, MiniGGUF) {
        let url = directory.appendingPathComponent("\(plan?.name ?? "full").gguf")
        let summary = try GGUFExporter(store: store).export(plan: plan, to: url)
        return (summary, try MiniGGUF(Array(Data(contentsOf: url))))
    }

    func testFullModelMetadataAndTensorTable() throws {
        try importWithTokenizer("deepseek_v3")
        let (summary, file) = try export(nil)
        XCTAssertEqual(file["general.architecture"], "str:deepseek2")
        // From config.json: MLA as one latent key-value head (key 32 + 8, value 32), per-head
        // sizes 16 + 8 and 16; the router's sigmoid (2), groups, scale and shared expert.
        for (key, value) in [("block_count", "u32:3"), ("embedding_length", "u32:64"), ("feed_forward_length", "u32:96"),
                             ("attention.head_count", "u32:4"), ("attention.head_count_kv", "u32:1"),
                             ("attention.key_length", "u32:40"), ("attention.value_length", "u32:32"),
                             ("attention.key_length_mla", "u32:24"), ("attention.value_length_mla", "u32:16"),
                             ("attention.kv_lora_rank", "u32:32"), ("attention.q_lora_rank", "u32:32"),
                             ("rope.dimension_count", "u32:8"), ("rope.freq_base", "f32:10000.0"), ("vocab_size", "u32:512"),
                             ("expert_count", "u32:8"), ("expert_used_count", "u32:2"), ("expert_feed_forward_length", "u32:32"),
                             ("leading_dense_block_count", "u32:1"), ("expert_shared_count", "u32:1"), ("expert_gating_func", "u32:2"),
                             ("expert_weights_scale", "f32:2.5"), ("expert_weights_norm", "bool:true"),
                             ("expert_group_count", "u32:4"), ("expert_group_used_count", "u32:2")] {
            XCTAssertEqual(file["deepseek2." + key], value, key)
        }
        XCTAssertNil(file["deepseek2.rope.scaling.type"])
        XCTAssertEqual(summary.notes, [], "the fixture has no prediction-layer weights, and deepseek2 renormalises as it does")

        var expected = ["token_embd.weight": [64, 512], "output_norm.weight": [64], "output.weight": [64, 512]]
        for l in 0..<3 {
            for (name, dims) in [("attn_norm.weight", [64]), ("ffn_norm.weight", [64]), ("attn_q_a.weight", [64, 32]),
                                 ("attn_q_a_norm.weight", [32]), ("attn_q_b.weight", [32, 96]), ("attn_kv_a_mqa.weight", [64, 40]),
                                 ("attn_kv_a_norm.weight", [32]), ("attn_k_b.weight", [16, 32, 4]), ("attn_v_b.weight", [32, 16, 4]),
                                 ("attn_output.weight", [64, 64])] {
                expected["blk.\(l).\(name)"] = dims
            }
        }
        (expected["blk.0.ffn_gate.weight"], expected["blk.0.ffn_up.weight"], expected["blk.0.ffn_down.weight"]) = ([64, 96], [64, 96], [96, 64])
        for l in [1, 2] {
            expected["blk.\(l).ffn_gate_inp.weight"] = [64, 8]
            expected["blk.\(l).exp_probs_b.bias"] = [8]
            for p in ["gate", "up"] { expected["blk.\(l).ffn_\(p)_shexp.weight"] = [64, 32]; expected["blk.\(l).ffn_\(p)_exps.weight"] = [64, 32, 8] }
            expected["blk.\(l).ffn_down_shexp.weight"] = [32, 64]
            expected["blk.\(l).ffn_down_exps.weight"] = [32, 64, 8]
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.dimensions) }), expected)
        XCTAssertEqual(file.tensors.count, 3 + 3 * 10 + 3 + 2 * 8)
        XCTAssertTrue(summary.choices.allSatisfy(\.exact))

        // kv_b_proj [4·(16 + 16), 32] (F32 in the fixture) split per head: k_b[h][r][i] =
        // kv_b[32h + i][r] (keys transposed), v_b[h][j][r] = kv_b[32h + 16 + j][r].
        let kvB = try StoreTensorProvider(store: store).matrix("model.layers.1.self_attn.kv_b_proj.weight")
        XCTAssertEqual([kvB.rows, kvB.columns], [128, 32])
        let kB = GGMLBlockEncoder.decode(file.bytes(of: "blk.1.attn_k_b.weight", count: 4 * 32 * 16 * 4), as: .f32, count: 4 * 32 * 16)
        let vB = GGMLBlockEncoder.decode(file.bytes(of: "blk.1.attn_v_b.weight", count: 4 * 16 * 32 * 4), as: .f32, count: 4 * 16 * 32)
        for h in 0..<4 {
            for r in 0..<32 {
                for i in 0..<16 { XCTAssertEqual(kB[(h * 32 + r) * 16 + i], kvB.values[(32 * h + i) * 32 + r]) }
                for j in 0..<16 { XCTAssertEqual(vB[(h * 16 + j) * 32 + r], kvB.values[(32 * h + 16 + j) * 32 + r]) }
            }
        }
        // The fixture rotates adjacent pairs (rope_interleave), as deepseek2 does: q_b as stored.
        let qB = try StoreTensorProvider(store: store).matrix("model.layers.2.self_attn.q_b_proj.weight")
        XCTAssertEqual(GGMLBlockEncoder.decode(file.bytes(of: "blk.2.attn_q_b.weight", count: qB.count * 4), as: .f32, count: qB.count), qB.values)
    }

    /// A 4-bit plan: the experts exactly as Q4_1, the groups kept (all 8 experts). A 50% REAP
    /// plan has no export: 4 experts in 4 groups leave one per group, too few for the router's
    /// top-2 group score, and the exporters refuse it with that reason.
    func testFourBitPlanIsExactQ4_1AndHalfPrunedPlanIsRefused() throws {
        try importWithTokenizer("deepseek_v3")
        profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
        let plan = try slim("q4") { $0.uniformBits = 4; $0.groupSize = 32 }
        let (summary, file) = try export(plan)
        XCTAssertEqual(file["deepseek2.expert_count"], "u32:8")
        XCTAssertEqual(file["deepseek2.expert_group_count"], "u32:4")
        let experts = summary.choices.filter { $0.tensor.hasSuffix("_exps.weight") }
        XCTAssertEqual(experts.count, 6)
        XCTAssertTrue(experts.allSatisfy { $0.type == "q4_1" && $0.exact })
        XCTAssertEqual(file.info("blk.1.ffn_down_exps.weight")?.type, GGMLType.q4_1.rawValue)

        let reap = try slim("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }
        XCTAssertThrowsError(try export(reap)) { XCTAssertTrue(String(describing: $0).contains("needs two experts"), "\($0)") }
    }

    func testHalvesRopeRowsAreReorderedToPairsAndYarnIsKeyed() throws {
        // Head size 6 with 4 rope rows at its tail: rows 2…5 of each head go pairs-first.
        XCTAssertEqual(GGUFLatentAttention.ropeRowOrder(rows: 12, headDim: 6, ropeDim: 4, interleaved: false),
                       [0, 1, 2, 4, 3, 5, 6, 7, 8, 10, 9, 11])
        XCTAssertNil(GGUFLatentAttention.ropeRowOrder(rows: 12, headDim: 6, ropeDim: 4, interleaved: true))

        try importWithTokenizer("deepseek_v3_yarn")
        let (summary, file) = try export(nil)
        // rope_parameters: yarn, factor 4, original 32, beta_fast 32, beta_slow 1, mscale 1, mscale_all_dim 0.8.
        for (key, value) in [("rope.scaling.type", "str:yarn"), ("rope.scaling.factor", "f32:4.0"),
                             ("rope.scaling.original_context_length", "u32:32"), ("rope.scaling.yarn_beta_fast", "f32:32.0"),
                             ("rope.scaling.yarn_beta_slow", "f32:1.0"), ("rope.scaling.yarn_log_multiplier", "f32:\(Float(0.1 * 0.8))")] {
            XCTAssertEqual(file["deepseek2." + key], value, key)
        }
        XCTAssertTrue(summary.notes.contains { $0.contains("mscale_all_dim (0.8)") }, "\(summary.notes)")
    }
}
