import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Hugging Face exports: shards split as huggingface_hub splits them, shards that read back
/// equal to the unsharded file, quantized plans rounded to the imported BF16 bit for bit, and
/// config.json carrying both key spellings of each family.
final class ShardedExportTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sharded-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func testShardsSplitAtTheLimitAndTheIndexMapsEveryTensor() throws {
        // 100-byte limit, f32 tensors of 40, 40, 32, 120 and 8 bytes: a and b fill 80, c would
        // make 112 so it opens the next shard, d is over the limit and takes a shard of its own
        // (appended as it comes, while c's shard stays open), e joins c.
        var writer = ShardedSafetensorsWriter(maxShardBytes: 100)
        let sizes = [("a", 10), ("b", 10), ("c", 8), ("d", 30), ("e", 2)]
        for (name, count) in sizes {
            writer.add(name, dtype: .f32, shape: [count], bytes: (0..<count).flatMap { i in withUnsafeBytes(of: Float(i).bitPattern) { Array($0) } })
        }
        XCTAssertEqual(writer.shards, [["a", "b"], ["d"], ["c", "e"]])
        let files = try writer.write(to: directory)
        XCTAssertEqual(files, ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
                               "model.safetensors.index.json"])
        let index = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("model.safetensors.index.json"))) as? [String: Any])
        XCTAssertEqual((index["metadata"] as? [String: Any])?["total_size"] as? Int, 240)
        let map = try XCTUnwrap(index["weight_map"] as? [String: String])
        XCTAssertEqual(map, ["a": files[0], "b": files[0], "d": files[1], "c": files[2], "e": files[2]])
        for (name, file) in map {
            let shard = try SafetensorsFile(url: directory.appendingPathComponent(file))
            XCTAssertEqual(Set(shard.tensors.keys), Set(map.filter { $0.value == file }.keys), file)
            XCTAssertEqual(try shard.matrix(name).values.count, sizes.first { $0.0 == name }!.1)
        }
        // Everything under the limit: one model.safetensors and no index.
        let single = directory.appendingPathComponent("single")
        try FileManager.default.createDirectory(at: single, withIntermediateDirectories: true)
        var small = ShardedSafetensorsWriter(maxShardBytes: 400)
        for (name, count) in sizes { small.add(name, dtype: .f32, shape: [count], bytes: [UInt8](repeating: 1, count: 4 * count)) }
        XCTAssertEqual(try small.write(to: single), ["model.safetensors"])
    }

    /// How many tensors the shard holding `name` has.
    func shards(in folder: URL, holding name: String) throws -> Int {
        try CheckpointDirectory(url: folder).file(for: name).tensors.count
    }

    func testShardSizesParseAsTransformersDoes() throws {
        XCTAssertEqual(try ShardSize("5GB").bytes, 5_000_000_000)
        XCTAssertEqual(try ShardSize("500MB").bytes, 500_000_000)
        XCTAssertEqual(try ShardSize("2GiB").bytes, 2 << 30)
        XCTAssertEqual(try ShardSize("1.5 kb").bytes, 1500)
        XCTAssertEqual(try ShardSize("123456").bytes, 123_456)
        XCTAssertThrowsError(try ShardSize("5 parsecs"))
        XCTAssertThrowsError(try ShardSize("0MB"))
    }

    func testQuantizedPlanShardsEqualTheUnshardedBF16Export() throws {
        let storeURL = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: Self.root.appendingPathComponent("models/moekit-tiny"), store: storeURL).run()
        let store = try ExpertStore(url: storeURL, readOnly: false)
        let sequences = (0..<3).map { s in (0..<16).map { (($0 + 3) * (s + 5) * 37) % 8000 + 3 } }
        let profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
        var options = SlimOptions(name: "reap50q4")
        options.prune = .reap; options.keepFraction = 0.5; options.uniformBits = 4; options.groupSize = 32; options.denseBits = 4
        let slimmer = try Slimmer(store: store)
        try slimmer.commit(try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences))
        let plan = try PlanLoader.plan(named: "reap50q4", in: store)

        let whole = directory.appendingPathComponent("whole"), sharded = directory.appendingPathComponent("sharded")
        let one = try PlanExporter(store: store).export(plan: plan, to: whole)
        XCTAssertTrue(one.files.contains("model.safetensors") && !one.files.contains("model.safetensors.index.json"))
        XCTAssertEqual(one.notes, [PlanExporter.dequantizedNote])
        let many = try PlanExporter(store: store, maxShardBytes: 4_000_000).export(plan: plan, to: sharded)
        let shardFiles = many.files.filter { $0.hasSuffix(".safetensors") }
        XCTAssertGreaterThan(shardFiles.count, 2)
        XCTAssertEqual(many.tensorBytes, one.tensorBytes)
        // Every shard within the limit, except that a tensor over it (the 4,194,304-byte BF16
        // embedding) has a shard of its own.
        for file in shardFiles {
            let shard = try SafetensorsFile(url: sharded.appendingPathComponent(file))
            let bytes = shard.tensors.values.reduce(0) { $0 + $1.byteRange.count }
            if bytes > 4_000_000 { XCTAssertEqual(shard.tensors.count, 1, file) }
        }
        XCTAssertEqual(try shards(in: sharded, holding: "model.embed_tokens.weight"), 1)
        // The shards read back equal the single file, tensor by tensor, bytes and dtype.
        let single = try SafetensorsFile(url: whole.appendingPathComponent("model.safetensors"))
        let shards = try CheckpointDirectory(url: sharded)
        XCTAssertEqual(shards.tensorNames, single.tensors.keys.sorted())
        for name in shards.tensorNames {
            XCTAssertEqual(try shards.layout(name).dtype, try single.info(name).dtype, name)
            XCTAssertEqual(try shards.layout(name).shape, try single.info(name).shape, name)
            XCTAssertEqual(try shards.tensorBytes(name).withUnsafeBytes { Array($0) }, Array(try single.rawBytes(name)), name)
        }

        // Quantized experts and dense tensors: BF16, and each value the plan's dequantized f32
        // weight rounded to nearest-even (ggml's bf16 rounding, an implementation of its own).
        let description = try store.modelDescription()
        func assertRounded(_ name: String, _ matrix: QuantizedMatrix, file: StaticString = #filePath, line: UInt = #line) throws {
            let info = try single.info(name)
            XCTAssertEqual(info.dtype, .bf16, name, file: file, line: line)
            let raw = try single.rawBytes(name)
            let written = (0..<(raw.count / 2)).map { UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8 }
            XCTAssertEqual(written, matrix.dequantized().values.map(GGMLBlockEncoder.bfloat16Bits), name, file: file, line: line)
        }
        var checked = 0
        for l in description.moeLayerIndices {
            let layer = plan.layers[l]!
            for (newIndex, expert) in layer.expertMap.survivingExperts.enumerated() {
                let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                let stored = try XCTUnwrap(store.expertRecord(ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))))
                XCTAssertEqual(stored.kind, .expertQuantized)
                for (p, projection) in Projection.allCases.enumerated() {
                    try assertRounded(description.names.expert(l, newIndex, projection), QuantizedMatrix(decoding: stored.payloads[p]))
                    checked += 1
                }
            }
        }
        let quantization = try XCTUnwrap(plan.denseQuantization)
        for name in quantization.tensors {
            try assertRounded(name, PlanExporter.quantizedDense(name, variant: quantization.variant, store: store))
            checked += 1
        }
        XCTAssertEqual(checked, 4 * 16 * 3 + quantization.tensors.count)
        XCTAssertFalse(quantization.tensors.isEmpty)
        // The unquantized tensors (norms) are the stored bytes.
        let dense = try StoreTensorProvider(store: store)
        let norm = "model.norm.weight"
        XCTAssertEqual(Array(try single.rawBytes(norm)), try dense.withVerifiedBytes(norm) { bytes, _ in Array(bytes) })
        // Both spellings of the expert count and the RoPE base, and MoEKit loads it again.
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: sharded.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["num_experts"] as? Int, 16)
        XCTAssertEqual(config["num_local_experts"] as? Int, 16)
        XCTAssertEqual(config["rope_theta"] as? Double, 10000)
        XCTAssertEqual(config["torch_dtype"] as? String, "bfloat16")
        XCTAssertEqual(config["dtype"] as? String, "bfloat16")
        XCTAssertTrue(config["rope_scaling"] is NSNull)
        XCTAssertEqual(try MoEModel(directory: sharded).description.layers[0].moe?.expertCount, 16)
    }

    func testConfigCarriesTheSpellingsOfEveryFamily() throws {
        func rewritten(_ fixture: String, experts: Int) throws -> (text: String, json: [String: Any]) {
            let data = try Data(contentsOf: Self.root.appendingPathComponent("Tests/Fixtures/\(fixture)/config.json"))
            let out = try ExportConfig.rewrite(data, expertCount: experts)
            return (String(decoding: out, as: UTF8.self), try XCTUnwrap(JSONSerialization.jsonObject(with: out) as? [String: Any]))
        }
        let expectedKeys = ["qwen2_moe": ["num_experts"], "qwen3_moe": ["num_experts", "num_local_experts"], "olmoe": ["num_experts"],
                            "mixtral": ["num_local_experts"], "deepseek_v3": ["n_routed_experts"]]
        for (fixture, keys) in expectedKeys {
            let (text, json) = try rewritten(fixture, experts: 4)
            for key in keys { XCTAssertEqual(json[key] as? Int, 4, "\(fixture) \(key)") }
            // Copied as written: a float stays a float in the text (strict configs reject 10000 for 10000.0).
            let theta = try XCTUnwrap((json["rope_parameters"] as? [String: Any])?["rope_theta"] as? Double, fixture)
            XCTAssertEqual(json["rope_theta"] as? Double, theta, fixture)
            XCTAssertTrue(text.contains("\"rope_theta\": \(theta)"), fixture)
            XCTAssertEqual(json["torch_dtype"] as? String, json["dtype"] as? String, fixture)
            XCTAssertTrue(json["rope_scaling"] is NSNull, fixture)
        }
        // DeepSeek-V3 with four experts no longer splits into n_group = 4 groups of two.
        let deepseek = try rewritten("deepseek_v3", experts: 4).json
        XCTAssertEqual(deepseek["n_group"] as? Int, 1)
        XCTAssertEqual(deepseek["topk_group"] as? Int, 1)
        // YaRN: transformers 4's rope_scaling, with every parameter of rope_parameters.
        let yarn = try rewritten("deepseek_v3_yarn", experts: 8).json
        let scaling = try XCTUnwrap(yarn["rope_scaling"] as? [String: Any])
        XCTAssertEqual(scaling["type"] as? String, "yarn")
        XCTAssertEqual(scaling["rope_type"] as? String, "yarn")
        for (key, value) in ["factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8, "original_max_position_embeddings": 32] {
            XCTAssertEqual(scaling[key] as? Double, value, key)
        }
        XCTAssertNil(scaling["rope_theta"])
        XCTAssertEqual(yarn["rope_theta"] as? Double, 10000)
        // A transformers 4 file gains rope_parameters (and dtype) from rope_theta and rope_scaling.
        let old = Data(#"{"model_type": "mixtral", "num_local_experts": 8, "rope_theta": 1000000.0, "rope_scaling": {"type": "linear", "factor": 2.0}, "torch_dtype": "bfloat16"}"#.utf8)
        let new = try XCTUnwrap(JSONSerialization.jsonObject(with: ExportConfig.rewrite(old, expertCount: 6)) as? [String: Any])
        XCTAssertEqual(new["num_local_experts"] as? Int, 6)
        XCTAssertEqual(new["dtype"] as? String, "bfloat16")
        let parameters = try XCTUnwrap(new["rope_parameters"] as? [String: Any])
        XCTAssertEqual(parameters["rope_theta"] as? Double, 1_000_000)
        XCTAssertEqual(parameters["rope_type"] as? String, "linear")
        XCTAssertEqual(parameters["factor"] as? Double, 2)
    }
}
