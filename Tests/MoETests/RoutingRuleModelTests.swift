import Foundation
import XCTest
@testable import MoE
import Routing

/// Plans' routing rules in whole models: a top-k override equals the same checkpoint with
/// that top-k in its config.json (the family's own routing, an independent reference), rules
/// that never fire change nothing, bit for bit, and skipping to one expert equals top-1.
final class RoutingRuleModelTests: XCTestCase {
    static let families = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3"]

    func model(_ family: String, rule: RoutingRule?, config: (inout [String: Any]) -> Void = { _ in }) throws -> MoEModel {
        let source = Fixtures.url(family)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rule-\(family)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "config.json" {
            try FileManager.default.createSymbolicLink(at: directory.appendingPathComponent(name), withDestinationURL: source.appendingPathComponent(name))
        }
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        config(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: directory.appendingPathComponent("config.json"))
        let checkpoint = try CheckpointDirectory(url: directory)
        let description = try Architectures.describe(configData: try checkpoint.configData(), file: "config.json")
        var maps = [Int: ExpertMap]()
        if let rule {
            for l in description.moeLayerIndices {
                maps[l] = ExpertMap(slotOfExpert: (0..<description.layers[l].moe!.expertCount).map { $0 }, routingRule: rule)
            }
        }
        return try MoEModel(description: description, tensors: checkpoint, expertMaps: maps, precision: .float32)
    }

    func testTopKOverrideEqualsTheConfigsTopK() throws {
        for family in Self.families {
            let ids = try Fixtures.reference(family).ids
            for k in [1, 3] {
                let ruled = try model(family, rule: RoutingRule(topK: k)).logits(ids)
                let configured = try model(family, rule: nil) { $0["num_experts_per_tok"] = k }.logits(ids)
                XCTAssertTrue(ruled.values == configured.values, "\(family) top-\(k): max |Δ| \(maxAbsDifference(ruled.values, configured.values))")
            }
        }
    }

    func testRulesThatNeverFireLeaveTheModelUnchanged() throws {
        for family in Self.families {
            let ids = try Fixtures.reference(family).ids
            let plain = try model(family, rule: nil).logits(ids)
            for rule in [RoutingRule(skip: .ratio(thresholds: [0])), RoutingRule(skip: .ser(minimum: 1, threshold: 0)),
                         RoutingRule(skip: .topP(p: 1)), RoutingRule(topK: 2)] {
                let ruled = try model(family, rule: rule).logits(ids)
                XCTAssertTrue(ruled.values == plain.values, "\(family) \(rule): max |Δ| \(maxAbsDifference(ruled.values, plain.values))")
            }
        }
    }

    func testSkippingDownToOneExpertEqualsTopOne() throws {
        // Softmax routers: the best raw score is the first choice. (DeepSeek-V3 chooses by
        // bias-corrected score and skips by raw score, so its top-1 differs; see RoutingRuleTests.)
        for family in Self.families where family != "deepseek_v3" {
            let ids = try Fixtures.reference(family).ids
            let topOne = try model(family, rule: nil) { $0["num_experts_per_tok"] = 1 }.logits(ids)
            for rule in [RoutingRule(skip: .ser(minimum: 1, threshold: 1)), RoutingRule(skip: .ratio(thresholds: [2])), RoutingRule(skip: .topP(p: 1e-6))] {
                let skipped = try model(family, rule: rule)
                let logits = try skipped.logits(ids)
                XCTAssertTrue(logits.values == topOne.values, "\(family) \(rule): max |Δ| \(maxAbsDifference(logits.values, topOne.values))")
                // And the counter sees exactly one expert per token in every MoE layer.
                let counter = ExpertUsageCounter()
                _ = try skipped.logits(ids, observer: counter)
                XCTAssertEqual(Set(counter.meanExpertsPerLayer.values), [1], "\(family) \(rule)")
            }
        }
    }

    func testAThresholdBetweenTheTwoScoresSkipsExactlyThoseTokens() throws {
        // With β = 0.5 a token runs its second expert iff p2 ≥ 0.5·p1: count those tokens from
        // the unmodified model's own routing and compare with what the ruled model ran.
        let family = "qwen3_moe"
        let ids = try Fixtures.reference(family).ids
        let decisions = DecisionRecorder()
        _ = try model(family, rule: nil).logits(ids, observer: decisions)
        let counter = ExpertUsageCounter()
        _ = try model(family, rule: RoutingRule(skip: .ratio(thresholds: [0.5]))).logits(ids, observer: counter)
        // Layer 0 sees the same hidden states in both models; later layers may differ.
        let expected = decisions.layer0.map { $0.scores[1] >= 0.5 * $0.scores[0] ? 2.0 : 1.0 }.reduce(0, +) / Double(ids.count)
        XCTAssertEqual(counter.meanExpertsPerLayer[0]!, expected, accuracy: 1e-12)
        XCTAssertGreaterThan(expected, 1)
        XCTAssertLessThan(expected, 2)
    }
}

/// Keeps layer 0's routing decisions.
final class DecisionRecorder: RoutingObserver {
    var layer0 = [RoutingDecision]()
    var needsExpertOutputs: Bool { false }
    func observe(_ observation: MoELayerObservation) {
        if observation.layer == 0 { layer0 += observation.decisions }
    }
}
