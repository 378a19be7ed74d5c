import Foundation
import XCTest
@testable import MoE
@testable import Routing

/// GLM-4.5 (`glm4_moe`) against transformers 5.23's `Glm4MoeForCausalLM` on the committed
/// fixture (Tests/Fixtures/glm4_moe, see its reference.json): a correction bias and a group
/// limit that both change routing, partial rotary, q/k norms and q/k/v biases, and a
/// multi-token-prediction layer in the checkpoint that transformers never runs.
final class Glm4MoeTests: XCTestCase {
    let tolerance: Float = 1e-4
    let fixture = Fixtures.url("glm4_moe")

    func testPrefillAndTokenByTokenDecodingMatchTransformers() throws {
        let model = try MoEModel(directory: fixture)
        let (ids, reference) = try Fixtures.reference("glm4_moe")
        let prefill = try model.logits(ids)
        let prefillDifference = maxAbsDifference(prefill.values, reference.values)
        XCTAssertLessThanOrEqual(prefillDifference, tolerance)
        XCTAssertEqual(argmaxPerRow(prefill), argmaxPerRow(reference))

        var cache = model.makeCache()
        var rows = [Float]()
        for id in ids { rows += try model.forward([id], cache: &cache).values }
        let decoded = Matrix(rows: ids.count, columns: reference.columns, values: rows)
        let decodeDifference = maxAbsDifference(decoded.values, reference.values)
        XCTAssertLessThanOrEqual(decodeDifference, tolerance)
        XCTAssertEqual(argmaxPerRow(decoded), argmaxPerRow(reference))
        print("glm4_moe prefill max|Δ| = \(prefillDifference), decode max|Δ| = \(decodeDifference)")
    }

    /// Every value below is the fixture's config.json (or transformers' reading of it).
    func testDescriptionFollowsTheConfig() throws {
        let d = try MoEModel(directory: fixture).description
        XCTAssertEqual(d.family, .glm4Moe)
        // RoPE on the first 16 × 0.5 = 8 dimensions of each head, in rotate_half's halves layout.
        XCTAssertEqual(d.rope.dimensions, 8)
        XCTAssertFalse(d.rope.interleaved)
        XCTAssertEqual(d.rope.theta, 10_000)
        XCTAssertEqual(d.attention.headCount, 4)
        XCTAssertEqual(d.attention.keyValueHeadCount, 2)
        XCTAssertEqual(d.attention.queryKeyHeadDim, 16)
        XCTAssertEqual(d.attention.qkNorm, .perHead)
        XCTAssertTrue(d.attention.qkvBias)
        XCTAssertFalse(d.attention.outputBias, "GLM's o_proj has no bias")
        XCTAssertEqual(d.attention.softmaxScale, 0.25, accuracy: 1e-7)
        XCTAssertEqual(d.layers.first, .dense(intermediateSize: 64))
        XCTAssertEqual(d.moeLayerIndices, [1, 2])
        let moe = try XCTUnwrap(d.layers[1].moe)
        XCTAssertEqual(moe.router, RouterConfig(expertCount: 8, topK: 2, scoring: .sigmoid, normalizeTopK: true,
                                                normalizationEpsilon: 1e-20, scalingFactor: 2.5, groupCount: 2,
                                                topGroupCount: 1, usesCorrectionBias: true))
        XCTAssertEqual(moe.sharedExpert, SharedExpertDescription(intermediateSize: 32, gated: false))
        XCTAssertEqual(d.predictionLayers, [.moe(moe)])
    }

    /// transformers' defaults for keys a GLM file may leave out: a rotary fraction of 0.5,
    /// one shared expert, one leading dense layer, no q/k norm.
    func testAbsentKeysTakeTransformersDefaults() throws {
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("config.json"))) as? [String: Any])
        for key in ["n_shared_experts", "first_k_dense_replace", "use_qk_norm", "num_nextn_predict_layers", "n_group", "topk_group"] {
            json.removeValue(forKey: key)
        }
        json["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0]
        let d = try Architectures.describe(configData: try JSONSerialization.data(withJSONObject: json))
        XCTAssertEqual(d.rope.dimensions, 8)
        XCTAssertEqual(d.attention.qkNorm, .none)
        XCTAssertEqual(d.moeLayerIndices, [1, 2])
        XCTAssertEqual(d.layers[1].moe?.sharedExpert?.intermediateSize, 32)
        XCTAssertEqual(d.layers[1].moe?.router.groupCount, 1)
        XCTAssertEqual(d.predictionLayers, [])
    }

    /// The prediction layer (model.layers.3) is in the checkpoint and in the description, and
    /// out of the forward pass: the model runs 3 decoder layers (and its logits match
    /// transformers', which never builds that layer).
    func testPredictionLayerIsDescribedAndNotRun() throws {
        let checkpoint = try CheckpointDirectory(url: fixture)
        let d = try Architectures.describe(configData: try checkpoint.configData())
        let prediction = d.predictionLayerInventory
        // 2 norms, q/k/v/o, 3 biases, q/k norms, router and its bias, the shared expert's 3,
        // eh_proj/enorm/hnorm/shared_head.norm, 8 experts × 3.
        XCTAssertEqual(prediction.count, 2 + 4 + 3 + 2 + 2 + 3 + 4 + 8 * 3)
        for spec in prediction {
            XCTAssertTrue(spec.name.hasPrefix("model.layers.3."), spec.name)
            XCTAssertEqual(try checkpoint.shape(spec.name), spec.shape, spec.name)
            XCTAssertNil(spec.expert, "prediction-layer experts are dense records: nothing routes to them")
        }
        XCTAssertEqual(try checkpoint.shape("model.layers.3.eh_proj.weight"), [64, 128])
        XCTAssertFalse(d.tensorInventory.contains { $0.name.hasPrefix("model.layers.3.") })
        let model = try MoEModel(directory: fixture)
        XCTAssertEqual(model.layers.count, 3)
    }
}
