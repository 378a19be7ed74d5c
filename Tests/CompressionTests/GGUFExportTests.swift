import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// GGUF exports of the default model (models/moekit-tiny, qwen3_moe, BF16) and its plans,
/// read back with a reader of the format written here: llama.cpp's names, shapes and types,
/// and tensors that dequantize to exactly the plan's weights where the mapping is exact.
final class GGUFExportTests: DefaultModelStoreCase {
    func export(_ plan: CompressionPlan?) throws -> (GGUFExportSummary, MiniGGUF) {
        let url = directory.appendingPathComponent("\(plan?.name ?? "full").gguf")
        let summary = try GGUFExporter(store: store).export(plan: plan, to: url)
        return (summary, try MiniGGUF(Array(Data(contentsOf: url))))
    }

    static let fixtures = model.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Fixtures")

    /// A store of fixture `name` (Tests/Fixtures), with the default model's tokenizer copied
    /// in (the fixtures have none; ids beyond the fixture's vocabulary are dropped).
    func importFixture(_ name: String) throws -> ExpertStore {
        let fm = FileManager.default
        let checkpoint = directory.appendingPathComponent("ckpt-\(name)")
        try fm.createDirectory(at: checkpoint, withIntermediateDirectories: true)
        let files = try fm.contentsOfDirectory(atPath: Self.fixtures.appendingPathComponent(name).path)
            .filter { $0 == "config.json" || ($0.hasPrefix("model") && $0.contains(".safetensors")) }
        for file in files {
            try fm.copyItem(at: Self.fixtures.appendingPathComponent("\(name)/\(file)"), to: checkpoint.appendingPathComponent(file))
        }
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            try fm.copyItem(at: Self.model.appendingPathComponent(file), to: checkpoint.appendingPathComponent(file))
        }
        let storeURL = directory.appendingPathComponent("store-\(name)")
        _ = try StoreImporter(checkpoint: checkpoint, store: storeURL).run()
        return try ExpertStore(url: storeURL)
    }

    /// `--gguf-expert-type q4_k` on the full (BF16) model: every expert tensor requantized.
    func testQ4_KExpertsAreRequantizedAndSaySo() throws {
        let url = directory.appendingPathComponent("q4k.gguf")
        let summary = try GGUFExporter(store: store, expertType: .q4_K).export(plan: nil, to: url)
        let file = try MiniGGUF(Array(Data(contentsOf: url)))
        XCTAssertEqual(file["general.file_type"], "u32:14", "llama_ftype MOSTLY_Q4_K_S")
        let expertChoices = summary.choices.filter { $0.tensor.hasSuffix("_exps.weight") }
        XCTAssertEqual(expertChoices.count, 12)
        XCTAssertTrue(expertChoices.allSatisfy { $0.type == "q4_K" && $0.from == "bf16" && !$0.exact })
        XCTAssertTrue(summary.choiceLines.contains("12 tensors: q4_K from bf16 (requantized: not exact)"), "\(summary.choiceLines)")
        // The other 38 tensors as stored; 32 experts of 256×256 per expert tensor at 144 bytes per 256 weights.
        XCTAssertTrue(summary.choices.filter { !$0.tensor.hasSuffix("_exps.weight") }.allSatisfy(\.exact))
        let info = try XCTUnwrap(file.info("blk.2.ffn_up_exps.weight"))
        XCTAssertEqual(info.type, GGMLType.q4_K.rawValue)
        XCTAssertEqual(info.dimensions, [256, 256, 32])
        let perExpert = 256 * 144
        XCTAssertEqual(file.info("blk.2.ffn_down_exps.weight")!.offset - info.offset, 32 * perExpert, "tensors in order gate, up, down")
        // Layer 2, expert 9, up projection: each weight within one step of its 32-value
        // sub-block's min–max grid.
        let weights = try XCTUnwrap(store.expertRecord(ExpertKey(layer: 2, expert: 9)))
        let stored = GGMLBlockEncoder.decode(weights.payloads[1], as: .bf16, count: 256 * 256)
        let start = file.dataStart + info.offset + 9 * perExpert
        let decoded = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: .q4_K, count: 256 * 256)
        for s in 0..<(stored.count / 32) {
            let sub = stored[(s * 32)..<((s + 1) * 32)]
            let step = (sub.max()! - min(0, sub.min()!)) / 15
            for i in sub.indices { XCTAssertLessThanOrEqual(abs(decoded[i] - stored[i]), step, "value \(i)") }
        }
        XCTAssertNotEqual(decoded, stored)
    }

    func testQ4_KRefusesRowsThatAreNotWholeSuperBlocks() throws {
        // The Mixtral fixture's experts have rows of 64 (gate, up) and 64 (down) values.
        let mixtral = try importFixture("mixtral")
        XCTAssertThrowsError(try GGUFExporter(store: mixtral, expertType: .q4_K).export(plan: nil, to: directory.appendingPathComponent("m.gguf"))) {
            XCTAssertEqual($0 as? GGUFExportError, .rowsNotWholeBlocks(tensor: "blk.0.ffn_gate_exps.weight", columns: 64, type: "q4_K", blockSize: 256))
            XCTAssertTrue(String(describing: $0).contains("'blk.0.ffn_gate_exps.weight' has rows of 64 values"))
        }
    }

    func testFullModelHasLlamaCppNamesShapesAndMetadata() throws {
        let (summary, file) = try export(nil)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file["general.architecture"], "str:qwen3moe")
        XCTAssertEqual(file["general.alignment"], "u32:32")
        for (key, value) in [("block_count", "u32:4"), ("context_length", "u32:1024"), ("embedding_length", "u32:256"),
                             ("feed_forward_length", "u32:768"), ("attention.head_count", "u32:4"), ("attention.head_count_kv", "u32:2"),
                             ("attention.key_length", "u32:64"), ("attention.value_length", "u32:64"), ("rope.freq_base", "f32:10000.0"),
                             ("attention.layer_norm_rms_epsilon", "f32:\(Float(1e-6))"), ("expert_count", "u32:32"),
                             ("expert_used_count", "u32:4"), ("expert_feed_forward_length", "u32:256")] {
            XCTAssertEqual(file["qwen3moe." + key], value, key)
        }
        XCTAssertEqual(file["tokenizer.ggml.model"], "str:gpt2")
        XCTAssertEqual(file["tokenizer.ggml.pre"], "str:gpt-2", "the bundled tokenizer is byte-level BPE with GPT-2's regex")
        XCTAssertEqual(file["tokenizer.ggml.eos_token_id"], "u32:0")
        let tokens = try XCTUnwrap(file["tokenizer.ggml.tokens"])
        XCTAssertTrue(tokens.hasPrefix("[str:<|endoftext|>,str:<|im_start|>,str:<|im_end|>,"))
        XCTAssertEqual(tokens.components(separatedBy: ",str:").count, 8192)
        XCTAssertTrue(file["tokenizer.ggml.token_type"]!.hasPrefix("[i32:3,i32:3,i32:3,i32:1,"), "special tokens are control tokens")
        XCTAssertNotNil(file["tokenizer.chat_template"])

        // Tied head: token_embd only. Dimensions innermost first; BF16 weights as stored, norms and routers F32.
        XCTAssertEqual(file["general.file_type"], "u32:32", "llama_ftype MOSTLY_BF16")
        XCTAssertNil(file.info("output.weight"))
        let expected: [String: ([Int], UInt32)] = [
            "token_embd.weight": ([256, 8192], 30), "output_norm.weight": ([256], 0),
            "blk.0.attn_norm.weight": ([256], 0), "blk.0.ffn_norm.weight": ([256], 0),
            "blk.0.attn_q.weight": ([256, 256], 30), "blk.0.attn_k.weight": ([256, 128], 30), "blk.0.attn_v.weight": ([256, 128], 30),
            "blk.0.attn_output.weight": ([256, 256], 30), "blk.0.attn_q_norm.weight": ([64], 0), "blk.0.attn_k_norm.weight": ([64], 0),
            "blk.0.ffn_gate_inp.weight": ([256, 32], 0), "blk.3.ffn_gate_exps.weight": ([256, 256, 32], 30),
            "blk.3.ffn_up_exps.weight": ([256, 256, 32], 30), "blk.3.ffn_down_exps.weight": ([256, 256, 32], 30),
        ]
        for (name, (dimensions, type)) in expected {
            let info = try XCTUnwrap(file.info(name), name)
            XCTAssertEqual(info.dimensions, dimensions, name)
            XCTAssertEqual(info.type, type, name)
            XCTAssertEqual(info.offset % 32, 0, name)
        }
        XCTAssertEqual(file.tensors.count, 2 + 4 * 12)
        XCTAssertEqual(summary.tensors, file.tensors.count)
        XCTAssertTrue(summary.choices.allSatisfy(\.exact))

        // Expert 5 of layer 2, gate projection: the stored BF16 bytes, unchanged.
        let record = try XCTUnwrap(store.expertRecord(ExpertKey(layer: 2, expert: 5)))
        let perExpert = 256 * 256 * 2
        let info = try XCTUnwrap(file.info("blk.2.ffn_gate_exps.weight"))
        let start = file.dataStart + info.offset + 5 * perExpert
        XCTAssertEqual(Array(file.bytes[start..<(start + perExpert)]), record.payloads[0])
    }

    /// `widensFloats`: every tensor F32, each value the stored BF16 value widened (so the file
    /// is the model exactly, and llama.cpp multiplies f32 activations as MoEKit does).
    func testFloat32ExportWidensEveryTensorExactly() throws {
        let url = directory.appendingPathComponent("full-f32.gguf")
        let summary = try GGUFExporter(store: store, widensFloats: true).export(plan: nil, to: url)
        let file = try MiniGGUF(Array(Data(contentsOf: url)))
        XCTAssertTrue(file.tensors.allSatisfy { $0.type == GGMLType.f32.rawValue })
        XCTAssertTrue(summary.choices.allSatisfy { $0.type == "f32" && $0.exact })
        XCTAssertEqual(file["general.file_type"], "u32:0", "llama_ftype ALL_F32")
        let record = try XCTUnwrap(store.expertRecord(ExpertKey(layer: 2, expert: 5)))
        let info = try XCTUnwrap(file.info("blk.2.ffn_gate_exps.weight"))
        let perExpert = 256 * 256 * 4
        let start = file.dataStart + info.offset + 5 * perExpert
        XCTAssertEqual(GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: .f32, count: 256 * 256),
                       GGMLBlockEncoder.decode(record.payloads[0], as: .bf16, count: 256 * 256))
        let embedding = try StoreTensorProvider(store: store).matrix("model.embed_tokens.weight").values
        XCTAssertEqual(GGMLBlockEncoder.decode(file.bytes(of: "token_embd.weight", count: embedding.count * 4), as: .f32, count: embedding.count), embedding)
    }

    func testPrunedFourBitPlanIsExactQ4_1() throws {
        let plan = try slim("reap50q4") { $0.prune = .reap; $0.keepFraction = 0.5; $0.uniformBits = 4; $0.groupSize = 32 }
        let (summary, file) = try export(plan)
        XCTAssertEqual(file["qwen3moe.expert_count"], "u32:16")
        XCTAssertEqual(file["general.file_type"], "u32:3", "llama_ftype MOSTLY_Q4_1")
        XCTAssertEqual(summary.expertsPerLayer, 16)
        let provider = try StoreVariantProvider(store: store)
        let dense = try StoreTensorProvider(store: store)
        let description = try store.modelDescription()
        for l in 0..<4 {
            let layer = plan.layers[l]!
            let survivors = layer.expertMap.survivingExperts
            // The router keeps the survivors' rows, in order, widened to F32 exactly.
            let router = try dense.matrix(description.names.router(l))
            let routerInfo = try XCTUnwrap(file.info("blk.\(l).ffn_gate_inp.weight"))
            XCTAssertEqual(routerInfo.dimensions, [256, 16])
            let routerStart = file.dataStart + routerInfo.offset
            let routerValues = GGMLBlockEncoder.decode(Array(file.bytes[routerStart..<(routerStart + 16 * 256 * 4)]), as: .f32, count: 16 * 256)
            XCTAssertEqual(routerValues, survivors.flatMap { router.values[($0 * 256)..<(($0 + 1) * 256)] })
            for (p, projection) in Projection.allCases.enumerated() {
                let info = try XCTUnwrap(file.info("blk.\(l).ffn_\(projection.rawValue)_exps.weight"))
                XCTAssertEqual(info.type, GGMLType.q4_1.rawValue)
                XCTAssertEqual(info.dimensions, [256, 256, 16])
                let perExpert = GGMLType.q4_1.byteCount([256, 256])
                for (e, expert) in survivors.enumerated() {
                    let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                    let quantized = try XCTUnwrap(provider.expert(layer: l, expert: record.expert, variant: record.variant) as? QuantizedExpert)
                    let matrix = [quantized.gate, quantized.up, quantized.down][p]
                    XCTAssertEqual(matrix.format, try QuantizationFormat(bits: 4, groupSize: 32))
                    let start = file.dataStart + info.offset + e * perExpert
                    let decoded = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: .q4_1, count: 256 * 256)
                    // Bit for bit, against both of MoEKit's dequantization kernels.
                    XCTAssertEqual(decoded.map(\.bitPattern), matrix.dequantized().values.map(\.bitPattern), "layer \(l) expert \(expert) \(projection)")
                    XCTAssertEqual(decoded.map(\.bitPattern), matrix.dequantizedRows(0..<matrix.rows, portable: true).values.map(\.bitPattern))
                }
            }
        }
        let expertChoices = summary.choices.filter { $0.tensor.hasSuffix("_exps.weight") }
        XCTAssertEqual(expertChoices.count, 12)
        XCTAssertTrue(expertChoices.allSatisfy { $0.type == "q4_1" && $0.from == "4-bit/g32" && $0.exact })
    }

    func testEightBitPlanIsRequantizedToQ8_0AndSaysSo() throws {
        let plan = try slim("q8") { $0.uniformBits = 8; $0.groupSize = 32 }
        let (summary, file) = try export(plan)
        let expertChoices = summary.choices.filter { $0.tensor.hasSuffix("_exps.weight") }
        XCTAssertTrue(expertChoices.allSatisfy { $0.type == "q8_0" && $0.from == "8-bit/g32" && !$0.exact })
        XCTAssertTrue(summary.choiceLines.contains { $0.contains("q8_0 from 8-bit/g32 (requantized: not exact)") })
        // Q8_0 of the plan's own dequantized weights: each value within half a step (d/2 with
        // d = max|x|/127 of its block) plus the f16 rounding of d.
        let provider = try StoreVariantProvider(store: store)
        let layer = plan.layers[1]!
        let record = layer.slots[layer.expertMap.slotOfExpert[7]!].record
        let weights = try XCTUnwrap(provider.expert(layer: 1, expert: record.expert, variant: record.variant) as? QuantizedExpert).down.dequantized().values
        let info = try XCTUnwrap(file.info("blk.1.ffn_down_exps.weight"))
        let perExpert = GGMLType.q8_0.byteCount([256, 256])
        let start = file.dataStart + info.offset + 7 * perExpert
        let decoded = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: .q8_0, count: 256 * 256)
        for b in 0..<(weights.count / 32) {
            let block = weights[(b * 32)..<((b + 1) * 32)]
            let step = block.map(abs).max()! / 127
            for i in block.indices { XCTAssertLessThanOrEqual(abs(decoded[i] - weights[i]), step * 0.5 + 127 * step * 0.001 + 1e-7) }
        }
        XCTAssertNotEqual(decoded, weights, "requantization to a symmetric grid changes the weights")
    }

    func testUnsupportedFamiliesAndPlansAreRefused() throws {
        var description = try store.modelDescription()
        // gpt-oss with its window on the odd layers: llama.cpp's graph slides it on the even ones.
        description.family = .gptOss
        description.attention.slidingWindow = 4
        description.attention.slidingWindowLayers = [1, 3]
        XCTAssertThrowsError(try GGUFArchitecture.of(description)) {
            XCTAssertTrue(String(describing: $0).contains("this model slides it on layers [1, 3]"), "\($0)")
        }
        let qwen2 = try Data(contentsOf: Self.model.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tests/Fixtures/tokenizer/qwen2style/tokenizer.json"))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: qwen2) as? [String: Any])
        XCTAssertEqual(try GGUFTokenizerMetadata.preTokenizerName(root["pre_tokenizer"]), "qwen2")
        XCTAssertThrowsError(try GGUFTokenizerMetadata.preTokenizerName(["type": "Metaspace"]))
    }

    /// The other families' fixtures (no tokenizer of their own: the default model's is copied
    /// in, its ids beyond the fixtures' 512 dropped) under llama.cpp's names for their graphs.
    func testOtherFamiliesTensorNames() throws {
        let perLayer = ["attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp",
                        "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]
        let extra: [String: (architecture: String, names: [String])] = [
            "qwen2_moe": ("qwen2moe", ["ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "ffn_gate_inp_shexp"]),
            "olmoe": ("olmoe", ["attn_q_norm", "attn_k_norm"]),
            "mixtral": ("llama", []),
        ]
        for (fixture, (architecture, names)) in extra.sorted(by: { $0.key < $1.key }) {
            let fixtureStore = try importFixture(fixture)
            let url = directory.appendingPathComponent("\(fixture).gguf")
            _ = try GGUFExporter(store: fixtureStore).export(plan: nil, to: url)
            let file = try MiniGGUF(Array(Data(contentsOf: url)))
            XCTAssertEqual(file["general.architecture"], "str:\(architecture)", fixture)
            var expected = Set(["token_embd.weight", "output_norm.weight", "output.weight"])
            for l in 0..<2 { for name in perLayer + names { expected.insert("blk.\(l).\(name).weight") } }
            if fixture == "qwen2_moe" { for l in 0..<2 { for p in ["q", "k", "v"] { expected.insert("blk.\(l).attn_\(p).bias") } } }
            XCTAssertEqual(Set(file.tensors.map(\.name)), expected, fixture)
            XCTAssertEqual(file["\(architecture).expert_count"], "u32:8", fixture)
            if fixture == "mixtral" {
                // q's rows in llama.cpp's interleaved-pair order within each of the 4 heads.
                let q = try StoreTensorProvider(store: fixtureStore).matrix("model.layers.1.self_attn.q_proj.weight")
                let info = try XCTUnwrap(file.info("blk.1.attn_q.weight"))
                let start = file.dataStart + info.offset
                let stored = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + q.count * 4)]), as: .f32, count: q.count)
                let order = GGUFArchitecture.interleavedRopeRows(rows: q.rows, heads: 4)
                XCTAssertEqual(stored, order.flatMap { q.values[($0 * q.columns)..<(($0 + 1) * q.columns)] })
                XCTAssertNotEqual(stored, q.values)
            }
        }
    }

    func testMixtralQueryKeyRowsInterleaveEachHead() {
        // Head size 4 (half 2), two heads: rows (0, 2, 1, 3) then (4, 6, 5, 7), as
        // convert_hf_to_gguf.py's permute orders them.
        XCTAssertEqual(GGUFArchitecture.interleavedRopeRows(rows: 8, heads: 2), [0, 2, 1, 3, 4, 6, 5, 7])
    }
}
