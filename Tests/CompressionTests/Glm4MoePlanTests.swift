import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Plans of the glm4_moe fixture (Tests/Fixtures/glm4_moe: 2 MoE layers of 8 experts in
/// 2 router groups, topk_group 1, and a multi-token-prediction layer 3), exported to
/// Hugging Face safetensors and GGUF and read back.
final class Glm4MoePlanTests: PlanFixtureCase {
    static let checkpoint = fixtures.appendingPathComponent("glm4_moe")

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("glm4-plan-tests-\(UUID().uuidString)")
        sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 255 + 1 } }   // vocabulary of 256
        try open("glm4_moe")
    }

    /// REAP at 50% keeps two experts in each router group (the best two by REAP score, super
    /// experts first), so the export keeps n_group and routes as MoEKit runs the plan.
    func testReapPlanKeepsEqualGroupsAndItsExportComputesThePlan() throws {
        let plan = try slim("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }
        let criteria = profile.criteria()
        for l in [1, 2] {
            let kept = plan.layers[l]!.expertMap.survivingExperts
            let protected = Set(plan.recipe.protectedSuperExperts.filter { $0.layer == l }.map(\.expert))
            for group in [0..<4, 4..<8] {
                let byScore = group.sorted { criteria[l][$0].reap > criteria[l][$1].reap }
                let expected = protected.filter(group.contains).union(byScore.filter { !protected.contains($0) }.prefix(2 - protected.filter(group.contains).count))
                XCTAssertEqual(Set(kept.filter(group.contains)), expected, "layer \(l) group \(group)")
            }
        }
        XCTAssertLessThanOrEqual(try exportDifference(plan), 2e-5)

        let out = directory.appendingPathComponent("export-reap50")
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["n_routed_experts"] as? Int, 4)
        XCTAssertEqual(config["n_group"] as? Int, 2, "two experts per group: the groups survive")
        XCTAssertEqual(config["topk_group"] as? Int, 1)
        // The prediction layer is written whole, byte for byte, and the summary says so.
        let summary = try PlanExporter(store: store).export(plan: plan, to: directory.appendingPathComponent("again"))
        XCTAssertTrue(summary.notes.contains { $0.hasPrefix("multi-token-prediction layer 3 written whole (all 8 experts") }, "\(summary.notes)")
        let source = try CheckpointDirectory(url: Self.checkpoint)
        let exported = try CheckpointDirectory(url: out)
        let prediction = source.tensorNames.filter { $0.hasPrefix("model.layers.3.") }
        XCTAssertEqual(prediction.count, 44)
        for name in prediction {
            XCTAssertEqual(Array(try exported.file(for: name).rawBytes(name)), Array(try source.file(for: name).rawBytes(name)), name)
        }
    }

    /// 4-bit experts, exported dequantized in the fixture's BF16: the logits move by BF16's
    /// rounding of the dequantized weights (relative 2^-9 per weight), not by the codes.
    func testQuantizedPlanExportsToTheSameLogitsUpToBF16Rounding() throws {
        let plan = try slim("q4") { $0.uniformBits = 4; $0.groupSize = 32 }
        let difference = try exportDifference(plan)
        XCTAssertLessThanOrEqual(difference, 2e-2)
        print("glm4_moe 4-bit/g32 plan vs its BF16 export: max |Δlogit| = \(difference)")
    }

    /// A group-limited router can only be exported when every group keeps the same number of
    /// experts, at least two.
    func testUnequalGroupsAreRefusedWithTheCounts() throws {
        let description = try store.modelDescription()
        XCTAssertNoThrow(try PlanExporter.checkGroups(of: [0, 3, 5, 6], layer: 1, description: description, plan: "p"))
        XCTAssertThrowsError(try PlanExporter.checkGroups(of: [0, 1, 2, 6], layer: 1, description: description, plan: "p")) {
            XCTAssertTrue(String(describing: $0).contains("layer 1 keeps 3, 1 experts in its 2 router groups"), "\($0)")
        }
        XCTAssertThrowsError(try PlanExporter.checkGroups(of: [2, 7], layer: 2, description: description, plan: "p")) {
            XCTAssertTrue(String(describing: $0).contains("keeps 1, 1 experts"), "\($0)")
        }
    }

    /// Every pruning criterion, at a uniform 50%, keeps two experts per group and exports to
    /// a checkpoint that computes the plan.
    func testEveryCriterionKeepsEqualGroupsAndExports() throws {
        for criterion in Criterion.allCases {
            let plan = try slim("prune-\(criterion.rawValue)") { $0.prune = criterion; $0.keepFraction = 0.5 }
            for l in [1, 2] {
                let kept = plan.layers[l]!.expertMap.survivingExperts
                XCTAssertEqual([0..<4, 4..<8].map { g in kept.filter(g.contains).count }, [2, 2], "\(criterion) layer \(l)")
            }
            XCTAssertLessThanOrEqual(try exportDifference(plan), 2e-5, criterion.rawValue)
        }
    }

    /// Group balancing in the selection itself: the four best experts overall are all in
    /// group 0, yet each group of four keeps its own best two.
    func testUniformSelectionBalancesRouterGroups() {
        let scores: [[Double]] = [[], [9, 8, 7, 6, 1, 2, 3, 0.5]]
        XCTAssertEqual(ExpertSelection.keep(scores: scores, keepFraction: 0.5, budget: .uniform, minimumPerLayer: 2, groups: [1: 2]), [1: [0, 1, 5, 6]])
        XCTAssertEqual(ExpertSelection.keep(scores: scores, keepFraction: 0.5, budget: .uniform, minimumPerLayer: 2), [1: [0, 1, 2, 3]])
        // 3 of 8 rounds up to 2 per group; a protected expert counts toward its group's two.
        XCTAssertEqual(ExpertSelection.keep(scores: scores, keepFraction: 3.0 / 8, budget: .uniform, minimumPerLayer: 2,
                                            protected: [LayerExpert(layer: 1, expert: 3)], groups: [1: 2]), [1: [0, 3, 5, 6]])
    }

    /// GGUF: llama.cpp's glm4moe names, shapes and keys, read back; the correction bias sliced
    /// to the kept experts; no block for the prediction layer.
    func testGGUFExportOfTheReapPlan() throws {
        // The fixture has no tokenizer: the default model's is copied in (ids past 256 dropped).
        let model = Self.fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")
        let folder = directory.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: Self.checkpoint.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: model.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        let storeURL = directory.appendingPathComponent("store-gguf")
        _ = try StoreImporter(checkpoint: folder, store: storeURL).run()
        store = try ExpertStore(url: storeURL, readOnly: false)
        profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
        let plan = try slim("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }

        let url = directory.appendingPathComponent("reap50.gguf")
        let summary = try GGUFExporter(store: store).export(plan: plan, to: url)
        let file = try MiniGGUF(Array(Data(contentsOf: url)))
        XCTAssertEqual(file["general.architecture"], "str:glm4moe")
        for (key, value) in [("block_count", "u32:3"), ("embedding_length", "u32:64"), ("feed_forward_length", "u32:64"),
                             ("attention.head_count", "u32:4"), ("attention.head_count_kv", "u32:2"), ("attention.key_length", "u32:16"),
                             ("rope.dimension_count", "u32:8"), ("rope.freq_base", "f32:10000.0"), ("expert_count", "u32:4"),
                             ("expert_used_count", "u32:2"), ("expert_feed_forward_length", "u32:32"), ("expert_shared_count", "u32:1"),
                             ("leading_dense_block_count", "u32:1"), ("expert_gating_func", "u32:2"), ("expert_weights_scale", "f32:2.5"),
                             ("expert_weights_norm", "bool:true"), ("expert_group_count", "u32:2"), ("expert_group_used_count", "u32:1")] {
            XCTAssertEqual(file["glm4moe." + key], value, key)
        }
        XCTAssertNil(file["glm4moe.nextn_predict_layers"])
        XCTAssertTrue(summary.notes.contains { $0.contains("multi-token-prediction layer is left out") }, "\(summary.notes)")

        var expected = ["token_embd.weight": [64, 256], "output_norm.weight": [64], "output.weight": [64, 256]]
        for l in 0..<3 {
            for (name, dims) in [("attn_norm.weight", [64]), ("post_attention_norm.weight", [64]), ("attn_q.weight", [64, 64]), ("attn_k.weight", [64, 32]),
                                 ("attn_v.weight", [64, 32]), ("attn_output.weight", [64, 64]), ("attn_q.bias", [64]), ("attn_k.bias", [32]),
                                 ("attn_v.bias", [32]), ("attn_q_norm.weight", [16]), ("attn_k_norm.weight", [16])] {
                expected["blk.\(l).\(name)"] = dims
            }
        }
        for p in ["gate", "up", "down"] { expected["blk.0.ffn_\(p).weight"] = p == "down" ? [64, 64] : [64, 64] }
        for l in [1, 2] {
            expected["blk.\(l).ffn_gate_inp.weight"] = [64, 4]
            expected["blk.\(l).exp_probs_b.bias"] = [4]
            for p in ["gate", "up"] { expected["blk.\(l).ffn_\(p)_shexp.weight"] = [64, 32]; expected["blk.\(l).ffn_\(p)_exps.weight"] = [64, 32, 4] }
            expected["blk.\(l).ffn_down_shexp.weight"] = [32, 64]
            expected["blk.\(l).ffn_down_exps.weight"] = [32, 64, 4]
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.dimensions) }), expected)

        // The correction bias in F32, its entries those of the kept experts.
        let dense = try StoreTensorProvider(store: store)
        for l in [1, 2] {
            let bias = try dense.matrix(description(store).names.correctionBias(l)).values
            let kept = plan.layers[l]!.expertMap.survivingExperts
            let info = try XCTUnwrap(file.info("blk.\(l).exp_probs_b.bias"))
            XCTAssertEqual(info.type, 0, "F32")
            let raw = file.bytes(of: "blk.\(l).exp_probs_b.bias", count: 16)
            let values = (0..<4).map { i in Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(raw[4 * i + $1]) << (8 * UInt32($1)) }) }
            XCTAssertEqual(values, kept.map { bias[$0] }, "layer \(l)")
        }
    }

    private func description(_ store: ExpertStore) throws -> ModelDescription { try store.modelDescription() }
}
