import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Plans that quantize dense weights (`--dense-bits`): which tensors, the bytes they take in
/// memory, and that MoEKit running the plan equals its exported checkpoint.
final class DenseQuantizationTests: PlanFixtureCase {
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("dense-quant-tests-\(UUID().uuidString)")
        try open("qwen2_moe")   // BF16, shared expert with a sigmoid gate, untied head; every row a whole number of 32-groups
    }

    func testDenseQuantizationCoversAttentionSharedExpertsAndHead() throws {
        let plan = try slim("dense8") { $0.denseBits = 8; $0.groupSize = 32 }
        let tensors = try XCTUnwrap(plan.denseQuantization).tensors
        let description = try store.modelDescription()
        let n = description.names
        for l in 0..<description.layerCount {
            for p in ["q_proj", "k_proj", "v_proj", "o_proj"] { XCTAssertTrue(tensors.contains(n.attention(l, "\(p).weight")), "layer \(l) \(p)") }
            for p in [Projection.gate, .up, .down] { XCTAssertTrue(tensors.contains(n.sharedExpert(l, p)!), "layer \(l) shared \(p)") }
            XCTAssertFalse(tensors.contains(n.router(l)), "routers stay full precision")
            XCTAssertFalse(tensors.contains(n.sharedExpertGateName(l)!), "the shared-expert gate stays full precision")
        }
        XCTAssertTrue(tensors.contains(n.outputHead))
        XCTAssertFalse(tensors.contains(n.embedding), "an untied embedding stays as stored")
        XCTAssertFalse(tensors.contains { $0.contains("norm") })
    }

    /// Resident dense bytes follow the plan: by hand, each quantized weight costs bits/8 bytes
    /// plus a half-precision scale and minimum per group; BF16 weights kept cost 2 bytes and
    /// routers, norms and biases 4. Loaded models, the plan record and `DenseFootprint` agree.
    func testDenseBytesFollowThePlan() throws {
        let checkpoint = try CheckpointDirectory(url: Self.fixtures.appendingPathComponent("qwen2_moe"))
        for bits in [8, 4] {
            let plan = try slim("dense\(bits)") { $0.denseBits = bits; $0.groupSize = 32 }
            let quantized = Set(plan.denseQuantization!.tensors)
            var expected = 0
            for name in checkpoint.tensorNames where !name.contains(".experts.") {
                let info = try checkpoint.layout(name)
                let elementCount = info.shape.reduce(1, *)
                if quantized.contains(name) {
                    expected += elementCount * bits / 8 + elementCount / 32 * 4
                } else if info.dtype == .bf16 && info.shape.count == 2 && !name.hasSuffix(".mlp.gate.weight") && !name.hasSuffix("shared_expert_gate.weight") {
                    expected += elementCount * 2
                } else {
                    expected += elementCount * 4
                }
            }
            let (model, _) = try PlanLoader.model(plan: plan, store: store)
            XCTAssertEqual(model.denseByteCount, expected, "\(bits)-bit")
            XCTAssertEqual(plan.expectedDenseBytes, expected, "\(bits)-bit")
            XCTAssertLessThan(expected, try store.loadModel().denseByteCount, "\(bits)-bit dense weights are smaller than BF16")
        }
    }

    /// The exported checkpoint holds the plan's dequantized dense tensors in the imported BF16,
    /// each value rounded to nearest-even (ggml's rounding, an implementation of its own), and
    /// loads again; 8-bit dense weights move the logits, and far less than
    /// 4-bit ones do (round-to-nearest error shrinks about 16x for 4 more bits). Mean |Δ|, not
    /// the maximum: on this random model a small change flips some top-k choices, and a flipped
    /// token moves by about as much whatever the width.
    func testDenseQuantizedPlanEqualsExportAndEightBitsStayCloser() throws {
        let full = try store.loadModel()
        var worst = [Int: Float]()
        for bits in [8, 4] {
            let plan = try slim("dense\(bits)") { $0.denseBits = bits; $0.groupSize = 32 }
            let out = directory.appendingPathComponent("export-\(plan.name)")
            _ = try PlanExporter(store: store).export(plan: plan, to: out)
            let exported = try CheckpointDirectory(url: out)
            let quantization = try XCTUnwrap(plan.denseQuantization)
            XCTAssertFalse(quantization.tensors.isEmpty)
            for name in quantization.tensors {
                XCTAssertEqual(try exported.layout(name).dtype, .bf16, name)
                let raw = try exported.file(for: name).rawBytes(name)
                let written = (0..<(raw.count / 2)).map { UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8 }
                let values = try PlanExporter.quantizedDense(name, variant: quantization.variant, store: store).dequantized().values
                XCTAssertEqual(written, values.map(GGMLBlockEncoder.bfloat16Bits), name)
            }
            XCTAssertNoThrow(try MoEModel(directory: out))
            let (model, _) = try PlanLoader.model(plan: plan, store: store)
            let differences = try sequences.flatMap { ids in zip(try model.logits(ids).values, try full.logits(ids).values).map { abs($0 - $1) } }
            worst[bits] = differences.reduce(0, +) / Float(differences.count)
        }
        XCTAssertGreaterThan(worst[8]!, 0, "the dense weights did change")
        XCTAssertLessThan(worst[8]!, worst[4]! / 4, "mean |Δ| 8-bit \(worst[8]!), 4-bit \(worst[4]!)")
    }
}
