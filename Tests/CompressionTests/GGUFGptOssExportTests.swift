import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE

/// GGUF exports of the gpt_oss fixture (Tests/Fixtures/gpt_oss: 2 layers, sliding window 4 on
/// layer 0, 4 experts with biases, router bias, sinks, YaRN, swiglu_limit 0.6) as llama.cpp's
/// gpt-oss, read back.
final class GGUFGptOssExportTests: PlanFixtureCase {
    static let model = fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-gptoss-\(UUID().uuidString)")
        sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 127 + 1 } }   // vocabulary of 128
        let folder = directory.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("gpt_oss/\(file)"), to: folder.appendingPathComponent(file))
        }
        for file in ["tokenizer.json", "tokenizer_config.json"] {   // the fixture has none
            try FileManager.default.copyItem(at: Self.model.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        let storeURL = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: folder, store: storeURL).run()
        store = try ExpertStore(url: storeURL, readOnly: false)
    }

    func export(_ plan: CompressionPlan?) throws -> (GGUFExportSummary, MiniGGUF) {
        let url = directory.appendingPathComponent("\(plan?.name ?? "full").gguf")
        let summary = try GGUFExporter(store: store).export(plan: plan, to: url)
        return (summary, try MiniGGUF(Array(Data(contentsOf: url))))
    }

    func testFullModelMetadataTensorsAndBiases() throws {
        let (summary, file) = try export(nil)
        XCTAssertEqual(file["general.architecture"], "str:gpt-oss")
        for (key, value) in [("block_count", "u32:2"), ("embedding_length", "u32:32"), ("attention.head_count", "u32:4"),
                             ("attention.head_count_kv", "u32:2"), ("attention.key_length", "u32:16"), ("attention.value_length", "u32:16"),
                             ("attention.sliding_window", "u32:4"), ("expert_count", "u32:4"), ("expert_used_count", "u32:2"),
                             ("expert_feed_forward_length", "u32:16"), ("rope.freq_base", "f32:150000.0"), ("rope.dimension_count", "u32:16"),
                             ("rope.scaling.type", "str:yarn"), ("rope.scaling.factor", "f32:32.0"),
                             ("rope.scaling.original_context_length", "u32:4096"), ("attention.layer_norm_rms_epsilon", "f32:\(Float(1e-5))")] {
            XCTAssertEqual(file["gpt-oss." + key], value, key)
        }
        // The fixture's swiglu_limit 0.6 and truncate false are not what llama.cpp computes: said, not hidden.
        XCTAssertTrue(summary.notes.contains { $0.contains("limit 0.6") }, "\(summary.notes)")
        XCTAssertTrue(summary.notes.contains { $0.contains("truncate false") }, "\(summary.notes)")

        var expected = ["token_embd.weight": [32, 128], "output_norm.weight": [32], "output.weight": [32, 128]]
        for l in 0..<2 {
            for (name, dims) in [("attn_norm.weight", [32]), ("post_attention_norm.weight", [32]), ("attn_q.weight", [32, 64]),
                                 ("attn_q.bias", [64]), ("attn_k.weight", [32, 32]), ("attn_k.bias", [32]), ("attn_v.weight", [32, 32]),
                                 ("attn_v.bias", [32]), ("attn_output.weight", [64, 32]), ("attn_output.bias", [32]), ("attn_sinks.weight", [4]),
                                 ("ffn_gate_inp.weight", [32, 4]), ("ffn_gate_inp.bias", [4]),
                                 ("ffn_gate_exps.weight", [32, 16, 4]), ("ffn_up_exps.weight", [32, 16, 4]), ("ffn_down_exps.weight", [16, 32, 4]),
                                 ("ffn_gate_exps.bias", [16, 4]), ("ffn_up_exps.bias", [16, 4]), ("ffn_down_exps.bias", [32, 4])] {
                expected["blk.\(l).\(name)"] = dims
            }
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0.dimensions) }), expected)
        XCTAssertEqual(file.tensors.count, 3 + 2 * 19)
        XCTAssertTrue(summary.choices.allSatisfy(\.exact))

        // Expert 3 of layer 1: its BF16 up matrix as stored, its up and down biases in F32.
        let record = try XCTUnwrap(store.expertRecord(ExpertKey(layer: 1, expert: 3)))
        XCTAssertEqual(record.tensors.map(\.shape), [[16, 32], [16, 32], [32, 16], [16], [16], [32]])
        let up = try XCTUnwrap(file.info("blk.1.ffn_up_exps.weight"))
        XCTAssertEqual(up.type, GGMLType.bf16.rawValue)
        let start = file.dataStart + up.offset + 3 * 16 * 32 * 2
        XCTAssertEqual(Array(file.bytes[start..<(start + 16 * 32 * 2)]), record.payloads[1])
        for (p, rows) in [(1, 16), (2, 32)] {
            let name = "blk.1.ffn_\(["gate", "up", "down"][p])_exps.bias"
            let all = GGMLBlockEncoder.decode(file.bytes(of: name, count: rows * 4 * 4), as: .f32, count: rows * 4)
            let stored = GGMLBlockEncoder.decode(record.payloads[3 + p], as: record.tensors[3 + p].dtype == .bf16 ? .bf16 : .f32, count: rows)
            XCTAssertEqual(Array(all[(3 * rows)..<(4 * rows)]), stored, name)
        }
    }

    func testReapPlanSlicesTheRouterAndItsBias() throws {
        profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
        let plan = try slim("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }
        let (summary, file) = try export(plan)
        XCTAssertEqual(summary.expertsPerLayer, 2)
        XCTAssertEqual(file["gpt-oss.expert_count"], "u32:2")
        let dense = try StoreTensorProvider(store: store)
        for l in 0..<2 {
            let kept = plan.layers[l]!.expertMap.survivingExperts
            let bias = try dense.matrix("model.layers.\(l).mlp.router.bias").values
            XCTAssertEqual(GGMLBlockEncoder.decode(file.bytes(of: "blk.\(l).ffn_gate_inp.bias", count: 8), as: .f32, count: 2), kept.map { bias[$0] })
            XCTAssertEqual(file.info("blk.\(l).ffn_down_exps.bias")?.dimensions, [32, 2])
            XCTAssertEqual(file.info("blk.\(l).ffn_gate_exps.weight")?.dimensions, [32, 16, 2])
        }
    }
}
