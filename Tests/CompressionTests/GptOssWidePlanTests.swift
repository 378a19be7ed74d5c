import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Quantized and merged plans of gpt-oss, on the gpt_oss_wide fixture (hidden 64, experts 64
/// wide: groups of 32 fit, unlike the gpt_oss fixture's 16): the quantized experts keep their
/// biases, and both exports (HF in gpt-oss's fused layout, GGUF as llama.cpp's gpt-oss) carry
/// the plan's weights, the GGUF ones bit for bit where the type is exact.
final class GptOssWidePlanTests: PlanFixtureCase {
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gptoss-wide-\(UUID().uuidString)")
        sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 127 + 1 } }   // vocabulary of 128
        let folder = directory.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("gpt_oss_wide/\(file)"), to: folder.appendingPathComponent(file))
        }
        let model = Self.fixtures.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")
        for file in ["tokenizer.json", "tokenizer_config.json"] {   // GGUF needs a tokenizer; the fixture has none
            try FileManager.default.copyItem(at: model.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        let storeURL = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: folder, store: storeURL).run()
        store = try ExpertStore(url: storeURL, readOnly: false)
        profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
    }

    func gguf(_ plan: CompressionPlan) throws -> (GGUFExportSummary, MiniGGUF) {
        let url = directory.appendingPathComponent("\(plan.name).gguf")
        let summary = try GGUFExporter(store: store).export(plan: plan, to: url)
        return (summary, try MiniGGUF(Array(Data(contentsOf: url))))
    }

    /// The imported biases of layer `l` expert `e`, widened from BF16.
    func importedBiases(layer l: Int, expert e: Int) throws -> [[Float]] {
        let record = try XCTUnwrap(store.expertRecord(ExpertKey(layer: l, expert: e)))
        return (3..<6).map { GGMLBlockEncoder.decode(record.payloads[$0], as: .bf16, count: record.tensors[$0].shape[0]) }
    }

    func testFourBitPlanKeepsTheBiasesAndItsGGUFIsTheExactQ4_1OfItsCodes() throws {
        let plan = try slim("reap50q4") { $0.prune = .reap; $0.keepFraction = 0.5; $0.uniformBits = 4; $0.groupSize = 32 }
        let provider = try StoreVariantProvider(store: store)
        let (summary, file) = try gguf(plan)
        XCTAssertEqual(file["gpt-oss.expert_count"], "u32:4")
        XCTAssertEqual(file["gpt-oss.expert_feed_forward_length"], "u32:64")
        let expertChoices = summary.choices.filter { $0.tensor.hasSuffix("_exps.weight") }
        XCTAssertEqual(expertChoices.count, 6)
        XCTAssertTrue(expertChoices.allSatisfy { $0.type == "q4_1" && $0.from == "4-bit/g32" && $0.exact }, "\(expertChoices)")
        for l in 0..<2 {
            let layer = plan.layers[l]!
            let survivors = layer.expertMap.survivingExperts
            XCTAssertEqual(survivors.count, 4)
            for (e, expert) in survivors.enumerated() {
                let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                let quantized = try XCTUnwrap(provider.expert(layer: l, expert: record.expert, variant: record.variant) as? QuantizedExpert)
                // Quantizing leaves the biases as imported (widened to f32, exactly).
                let biases = try XCTUnwrap(quantized.biases).all
                XCTAssertEqual(biases, try importedBiases(layer: l, expert: expert), "layer \(l) expert \(expert)")
                for (p, projection) in Projection.allCases.enumerated() {
                    let matrix = [quantized.gate, quantized.up, quantized.down][p]
                    let weight = try XCTUnwrap(file.info("blk.\(l).ffn_\(projection.rawValue)_exps.weight"))
                    XCTAssertEqual(weight.type, GGMLType.q4_1.rawValue)
                    XCTAssertEqual(weight.dimensions, [64, 64, 4])
                    let perExpert = GGMLType.q4_1.byteCount([64, 64])
                    let start = file.dataStart + weight.offset + e * perExpert
                    let decoded = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: .q4_1, count: 64 * 64)
                    XCTAssertEqual(decoded.map(\.bitPattern), matrix.dequantized().values.map(\.bitPattern), "layer \(l) expert \(expert) \(projection)")
                    // The bias rows, one per kept expert, in F32.
                    let bias = try XCTUnwrap(file.info("blk.\(l).ffn_\(projection.rawValue)_exps.bias"))
                    XCTAssertEqual(bias.dimensions, [64, 4])
                    let all = GGMLBlockEncoder.decode(file.bytes(of: "blk.\(l).ffn_\(projection.rawValue)_exps.bias", count: 64 * 4 * 4), as: .f32, count: 64 * 4)
                    XCTAssertEqual(Array(all[(e * 64)..<((e + 1) * 64)]), biases[p], "layer \(l) slot \(e) \(projection) bias")
                }
            }
        }
    }

    func testEightBitPlanRequantizesToQ8_0WithinHalfAStep() throws {
        let plan = try slim("q8") { $0.uniformBits = 8; $0.groupSize = 32 }
        let (summary, file) = try gguf(plan)
        let expertChoices = summary.choices.filter { $0.tensor.hasSuffix("_exps.weight") }
        XCTAssertTrue(expertChoices.allSatisfy { $0.type == "q8_0" && $0.from == "8-bit/g32" && !$0.exact }, "\(expertChoices)")
        let provider = try StoreVariantProvider(store: store)
        let layer = plan.layers[1]!
        let record = layer.slots[layer.expertMap.slotOfExpert[6]!].record
        let quantized = try XCTUnwrap(provider.expert(layer: 1, expert: record.expert, variant: record.variant) as? QuantizedExpert)
        XCTAssertEqual(try XCTUnwrap(quantized.biases).all, try importedBiases(layer: 1, expert: 6))
        let weights = quantized.gate.dequantized().values
        let info = try XCTUnwrap(file.info("blk.1.ffn_gate_exps.weight"))
        let perExpert = GGMLType.q8_0.byteCount([64, 64])
        let start = file.dataStart + info.offset + 6 * perExpert
        let decoded = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: .q8_0, count: 64 * 64)
        for b in 0..<(weights.count / 32) {
            let block = (b * 32)..<((b + 1) * 32)
            let step = weights[block].map(abs).max()! / 127
            for i in block { XCTAssertLessThanOrEqual(abs(decoded[i] - weights[i]), step * 0.5 + 127 * step * 0.001 + 1e-7) }
        }
    }

    func testMergedPlanWritesTheMergedWeightsAndBiases() throws {
        let plan = try slim("merge") { $0.merge = .hcSMoE; $0.keepFraction = 0.5 }
        let (summary, file) = try gguf(plan)
        XCTAssertEqual(file["gpt-oss.expert_count"], "u32:8", "merged experts are written once per member")
        let provider = try StoreVariantProvider(store: store, precision: .float32)
        var merged = 0
        for l in 0..<2 {
            let layer = plan.layers[l]!
            for (e, expert) in layer.expertMap.survivingExperts.enumerated() {
                let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                guard record.variant != 0 else { continue }
                merged += 1
                let weights = try XCTUnwrap(provider.expert(layer: l, expert: record.expert, variant: record.variant) as? FeedForward)
                for (p, projection) in Projection.allCases.enumerated() {
                    let name = "blk.\(l).ffn_\(projection.rawValue)_exps.weight"
                    let info = try XCTUnwrap(file.info(name))
                    let type = try XCTUnwrap(GGMLType(rawValue: info.type))
                    let perExpert = type.byteCount([64, 64])
                    let start = file.dataStart + info.offset + e * perExpert
                    let decoded = GGMLBlockEncoder.decode(Array(file.bytes[start..<(start + perExpert)]), as: type, count: 64 * 64)
                    let expected = [weights.gate, weights.up, weights.down][p].values
                    // Written in the layer's one type: exact when it is the merged variant's, else within BF16's half ulp.
                    for (a, b) in zip(decoded, expected) { XCTAssertLessThanOrEqual(abs(a - b), abs(b) / 256 + 1e-30, "\(name) slot \(e)") }
                    let all = GGMLBlockEncoder.decode(file.bytes(of: "blk.\(l).ffn_\(projection.rawValue)_exps.bias", count: 64 * 8 * 4), as: .f32, count: 64 * 8)
                    XCTAssertEqual(Array(all[(e * 64)..<((e + 1) * 64)]), weights.biases!.all[p], "slot \(e) \(projection) bias")
                }
            }
        }
        XCTAssertGreaterThan(merged, 1)
        XCTAssertEqual(summary.expertsPerLayer, 8)
    }

    func testQuantizedPlansRunAndTheirHFExportFollowsThemUpToBF16Rounding() throws {
        for (name, bits) in [("q4", 4), ("q8", 8)] {
            let plan = try slim(name) { $0.uniformBits = bits; $0.groupSize = 32 }
            let (model, _) = try PlanLoader.model(plan: plan, store: store)
            let full = try store.loadModel()
            let quantizationChange = try sequences.map { maxAbsDifference(try model.logits($0).values, try full.logits($0).values) }.max()!
            XCTAssertGreaterThan(quantizationChange, 0, "\(name): the plan runs its quantized experts")
            // The HF export holds the dequantized weights rounded to BF16: the exported model
            // follows the plan far closer than the plan follows the full model.
            let exportChange = try exportDifference(plan)
            XCTAssertLessThan(exportChange, quantizationChange / 4, "\(name): export \(exportChange) vs quantization \(quantizationChange)")
            print("gpt_oss_wide \(name): plan vs full max|Δlogit| \(quantizationChange), HF export vs plan \(exportChange)")
        }
    }

    /// With `rebuilt: .float32` the HF export holds exactly the plan's weights: the exported
    /// checkpoint computes the plan's logits to f32 rounding, for quantized and merged plans,
    /// and the layer's imported experts beside them are widened exactly.
    func testFloat32RebuiltExportComputesThePlan() throws {
        QuantizedMatrix.usesIntegerKernels = false
        defer { QuantizedMatrix.usesIntegerKernels = true }
        for (name, configure) in [("q4", { (o: inout SlimOptions) in o.uniformBits = 4; o.groupSize = 32 }),
                                  ("merge", { (o: inout SlimOptions) in o.merge = .hcSMoE; o.keepFraction = 0.5 })] {
            let plan = try slim(name, configure)
            let out = directory.appendingPathComponent("export-f32-\(name)")
            let summary = try PlanExporter(store: store, rebuilt: .float32).export(plan: plan, to: out)
            XCTAssertTrue(summary.notes.contains { $0.contains("f32") }, "\(summary.notes)")
            let exported = try CheckpointDirectory(url: out, derivations: [])
            XCTAssertEqual(try exported.layout("model.layers.1.mlp.experts.gate_up_proj").dtype, .f32)
            let (model, _) = try PlanLoader.model(plan: plan, store: store)
            let reloaded = try MoEModel(directory: out)
            for ids in sequences {
                XCTAssertLessThanOrEqual(maxAbsDifference(try model.logits(ids).values, try reloaded.logits(ids).values), 1e-4, name)
            }
        }
    }
}
