import Foundation
import XCTest
@testable import MoE
@testable import Routing

/// The profiler's criteria against an independent computation with transformers forward
/// hooks (tools/profile_reference/profile_reference.py; Tests/Fixtures/profile_reference).
final class ProfileReferenceTests: XCTestCase {
    struct Reference: Decodable {
        struct Layer: Decodable {
            var layer: Int
            var token_count: Int
            var routing_entropy: Double
            var residual_max: Double
            var logit_cosine: [[Double]]
            var co_activation: [[Double]]
            var dense_output_mean: [[Double]]
            var routed_output_mean: [[Double]]
            var experts: [[String: Double]]
        }
        var sequences: [[Int]]
        var dense_sample_stride: Int
        var layers: [Layer]
    }

    /// Profiles `sequences` with MoEKit's own forward pass.
    static func profile(model: MoEModel, sequences: [[Int]], stride: Int) throws -> RoutingProfile {
        let d = model.description
        let profiler = ProfileAccumulator(
            modelFingerprint: "test", source: "reference",
            moeLayers: d.layers.map { $0.moe.map { (experts: $0.expertCount, hidden: d.hiddenSize, topK: $0.topK) } },
            denseSampleStride: stride)
        for ids in sequences {
            profiler.countSequence()
            _ = try model.logits(ids, observer: profiler)
        }
        return profiler.profile
    }

    func assertClose(_ a: Double, _ b: Double, _ what: @autoclosure () -> String, relative: Double = 1e-4, absolute: Double = 1e-5) {
        XCTAssertLessThanOrEqual(abs(a - b), max(relative * max(abs(a), abs(b)), absolute), "\(what()): swift \(a) vs reference \(b)")
    }

    func check(model: MoEModel, referenceFile: URL) throws {
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: referenceFile))
        let profile = try Self.profile(model: model, sequences: reference.sequences, stride: reference.dense_sample_stride)
        let criteria = profile.criteria()
        let fields: [(String, (ExpertCriteria) -> Double)] = [
            ("frequency", \.frequency), ("soft_frequency", \.softFrequency), ("ean_sum", \.eanSum), ("ean", \.ean),
            ("reap", \.reap), ("reap_raw_score", \.reapRawScore), ("easy_ep", \.easyEP), ("tcess", \.tcess),
            ("mone_routing_score", \.moneRoutingScore), ("mone_deviation", \.moneDeviation),
            ("mone_redundancy", \.moneRedundancy), ("mcmoe_activation_share", \.mcmoeActivationShare),
            ("mcmoe_score_share", \.mcmoeScoreShare), ("routed_mean_norm", \.routedMeanNorm),
            ("max_abs_output", \.maxAbsOutput), ("slot_share", \.slotShare),
        ]
        var compared = 0
        for r in reference.layers {
            let layer = try XCTUnwrap(profile.layers[r.layer])
            XCTAssertEqual(layer.tokenCount, r.token_count)
            assertClose(layer.routingEntropy, r.routing_entropy, "layer \(r.layer) entropy")
            assertClose(layer.residualMax, r.residual_max, "layer \(r.layer) residual max")
            for (j, expected) in r.experts.enumerated() {
                for (name, value) in fields {
                    assertClose(value(criteria[r.layer][j]), try XCTUnwrap(expected[name], name), "layer \(r.layer) expert \(j) \(name)")
                    compared += 1
                }
                for i in 0..<layer.expertCount {
                    assertClose(layer.logitCosine(j, i), r.logit_cosine[j][i], "layer \(r.layer) logit cosine \(j),\(i)")
                    XCTAssertEqual(layer.coActivation[j * layer.expertCount + i], r.co_activation[j][i])
                }
                for (c, (mine, theirs)) in zip(layer.denseOutputMean(j), r.dense_output_mean[j]).enumerated() {
                    assertClose(mine, theirs, "layer \(r.layer) expert \(j) dense mean [\(c)]", absolute: 1e-5)
                }
                for (c, (mine, theirs)) in zip(layer.routedOutputMean(j), r.routed_output_mean[j]).enumerated() {
                    assertClose(mine, theirs, "layer \(r.layer) expert \(j) routed mean [\(c)]", absolute: 1e-5)
                }
            }
        }
        XCTAssertGreaterThan(compared, 0)
    }

    func testFixtureCriteriaMatchTransformersHooks() throws {
        let file = Fixtures.url("profile_reference/qwen3_moe_fixture.json")
        try check(model: MoEModel(directory: Fixtures.url("qwen3_moe")), referenceFile: file)
    }

    func testDefaultModelCriteriaMatchTransformersHooks() throws {
        let file = Fixtures.url("profile_reference/moekit_tiny_python.json")
        let modelDirectory = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")
        try check(model: MoEModel(directory: modelDirectory), referenceFile: file)
    }

    /// An attached observer sees everything and changes nothing.
    func testObserverDoesNotChangeLogitsAndSeesConsistentRouting() throws {
        for family in ["qwen2_moe", "deepseek_v3"] {
            let model = try MoEModel(directory: Fixtures.url(family))
            let (ids, _) = try Fixtures.reference(family)
            let plain = try model.logits(ids)
            let profile = try Self.profile(model: model, sequences: [ids], stride: 4)
            let observed = try model.logits(ids, observer: ProfileAccumulator(modelFingerprint: "", source: "",
                moeLayers: model.description.layers.map { $0.moe.map { (experts: $0.expertCount, hidden: model.description.hiddenSize, topK: $0.topK) } }))
            XCTAssertEqual(plain, observed, family)
            for l in model.description.moeLayerIndices {
                let layer = try XCTUnwrap(profile.layers[l])
                let k = model.description.layers[l].moe!.topK
                XCTAssertEqual(layer.experts.reduce(0) { $0 + $1.count }, Double(ids.count * k), family)
                XCTAssertEqual(layer.tokenCount, ids.count)
                XCTAssertEqual(layer.denseTokenCount, (ids.count + 3) / 4)
            }
        }
    }
}

/// Streaming (layer by layer, hidden states spilled to disk) and in-memory profiling agree exactly.
final class StreamingProfileTests: XCTestCase {
    func testStreamingEqualsInMemory() throws {
        for family in ["qwen3_moe", "deepseek_v3"] {
            let directory = Fixtures.url(family)
            let checkpoint = try CheckpointDirectory(url: directory)
            let description = try Architectures.describe(configData: try checkpoint.configData())
            let model = try MoEModel(description: description, tensors: checkpoint)
            let (ids, _) = try Fixtures.reference(family)
            let sequences = [ids, Array(ids.prefix(9)), Array(ids.suffix(13))]
            let profiler = CalibrationProfiler(fingerprint: "f", source: "s")
            let inMemory = try profiler.profile(model: model, sequences: sequences)
            // A budget of one sequence forces the others through the disk spool.
            let streamed = try profiler.profileStreaming(
                runner: LayerwiseRunner(description: description, tensors: checkpoint), sequences: sequences,
                hiddenStateBudget: ids.count * description.hiddenSize * 4,
                expertsForLayer: { _ in try LoadedExperts(description: description, tensors: checkpoint) })
            XCTAssertEqual(streamed, inMemory, family)
        }
    }
}
