import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Plans carrying routing rules (`slim --top-k`, `--skip`): the rule is resolved from the
/// profile as documented, composes with pruning, the refit and quantization, survives the
/// store, and evaluation reports the experts each token ran, in memory and streamed alike.
final class RoutingRulePlanTests: XCTestCase {
    var directory: URL!
    let sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 511 + 1 } }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("rule-plan-tests-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// The qwen2_moe fixture (8 experts, top-2, a shared expert) in a store, with its profile.
    func importedStore() throws -> (ExpertStore, RoutingProfile) {
        let url = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: PlanFixtureCase.fixtures.appendingPathComponent("qwen2_moe"), store: url).run()
        let store = try ExpertStore(url: url, readOnly: false)
        let profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
        return (store, profile)
    }

    func testRulesResolveComposeAndAreCountedByEvaluation() throws {
        let (store, profile) = try importedStore()
        let slimmer = try Slimmer(store: store)
        var lu = SlimOptions(name: "lu")
        lu.skip = .lu(quantile: 0.5)
        var topOne = SlimOptions(name: "top1")
        topOne.topK = [1]
        topOne.prune = .reap
        topOne.keepFraction = 0.125          // one expert per layer: allowed under top-1, not under the family's top-2
        var composed = SlimOptions(name: "composed")
        composed.prune = .reap
        composed.keepFraction = 0.5
        composed.skip = .ser(minimum: 1, threshold: 0.5)
        composed.refit = true
        composed.uniformBits = 4
        composed.groupSize = 32
        for options in [lu, topOne, composed] {
            try slimmer.commit(try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences))
        }
        // Without the top-1 rule pruning stops at the family's top-2.
        var familyTopK = topOne
        familyTopK.name = "family-top-k"
        familyTopK.topK = nil
        let floor = try slimmer.slim(profile: profile, profileName: "test", options: familyTopK, calibration: sequences).plan
        XCTAssertEqual(floor.layers.compactMap { $0?.expertMap.survivingExperts.count }, [2, 2])

        let description = try store.modelDescription()
        let plans = try ["lu", "top1", "composed"].map { try PlanLoader.plan(named: $0, in: store) }
        for l in description.moeLayerIndices {
            // Lu: β_2 is the profile's median of p2/p1, read from its histogram.
            let median = Float(profile.layers[l]!.scoreRatioQuantile(rank: 2, quantile: 0.5)!)
            XCTAssertEqual(plans[0].layers[l]!.expertMap.routingRule, RoutingRule(skip: .ratio(thresholds: [median])))
            XCTAssertEqual(plans[1].layers[l]!.expertMap.routingRule, RoutingRule(topK: 1))
            XCTAssertEqual(plans[1].layers[l]!.expertMap.survivingExperts.count, 1)
            XCTAssertEqual(plans[2].layers[l]!.expertMap.routingRule, RoutingRule(skip: .ser(minimum: 1, threshold: 0.5)))
            XCTAssertEqual(plans[2].layers[l]!.expertMap.survivingExperts.count, 4)
        }
        XCTAssertEqual(plans[2].recipe.skip, "ser:1,0.5")

        let evaluator = Evaluator(window: 12)
        let windows = evaluator.windows(sequences.flatMap { $0 })
        let reference = try store.loadModel()
        let inMemory = try evaluator.evaluate(
            [EvaluationCandidate(plan: "full", model: reference, expertBytes: 0)]
                + plans.map { EvaluationCandidate(plan: $0.name, model: try PlanLoader.model(plan: $0, store: store).model, expertBytes: $0.expectedExpertBytes) },
            reference: reference, windows: windows, data: "test")
        let runner = LayerwiseRunner(description: description, tensors: try StoreTensorProvider(store: store), precision: .stored)
        let streamed = try evaluator.evaluateStreaming(
            [try .full(store: store)] + plans.map { try .plan($0, store: store) },
            reference: try .full(store: store), runner: runner, windows: windows, data: "test")
        for (a, b) in zip(inMemory, streamed) {
            XCTAssertEqual(a.perplexity, b.perplexity, a.plan)
            XCTAssertEqual(a.expertsPerTokenByLayer, b.expertsPerTokenByLayer, a.plan)
        }
        let layers = description.moeLayerIndices.count
        XCTAssertEqual(inMemory[0].expertsPerTokenByLayer, Array(repeating: 2, count: layers))
        XCTAssertEqual(inMemory[2].expertsPerTokenByLayer, Array(repeating: 1, count: layers))
        for skipping in [inMemory[1], inMemory[3]] {
            XCTAssertGreaterThan(skipping.expertsPerToken, 1, skipping.plan)
            XCTAssertLessThan(skipping.expertsPerToken, 2, skipping.plan)
            XCTAssertGreaterThan(skipping.meanKL, 0, skipping.plan)
        }
        // The median skips rank 2 for about half the tokens of layer 0, which sees the same
        // hidden states as the profile did (other layers see the plan's own).
        XCTAssertEqual(inMemory[1].expertsPerTokenByLayer[0], 1.5, accuracy: 0.15)
    }
}
