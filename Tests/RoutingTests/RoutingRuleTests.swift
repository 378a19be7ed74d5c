import XCTest
@testable import Routing

/// Routing rules (top-k override and skipping, METHODS §14) on hand-computed cases.
final class RoutingRuleTests: XCTestCase {
    // softmax([0, ln 2, ln 3, ln 4]) = [0.1, 0.2, 0.3, 0.4]: ranked 3, 2, 1, 0.
    let logits: [Float] = [0, log(2), log(3), log(4)]

    func route(_ router: Router) -> RoutingDecision {
        logits.withUnsafeBufferPointer { router.route(logits: $0) }
    }

    func router(topK: Int = 3, normalize: Bool = true, _ rule: RoutingRule?) -> Router {
        Router(config: RouterConfig(expertCount: 4, topK: topK, scoring: .softmax, normalizeTopK: normalize), rule: rule)
    }

    func testRatioSkipsRanksBelowTheirThreshold() {
        // p2/p1 = 0.75, p3/p1 = 0.5. β = [0.7, 0.6]: rank 2 runs, rank 3 does not; gates 4/7, 3/7.
        let d = route(router(RoutingRule(skip: .ratio(thresholds: [0.7, 0.6]))))
        XCTAssertEqual(d.experts, [3, 2])
        XCTAssertEqual(d.gates[0], 4.0 / 7, accuracy: 1e-6)
        XCTAssertEqual(d.gates[1], 3.0 / 7, accuracy: 1e-6)
        // β_2 = 0.8 stops at rank 2 even though rank 3 would pass β_3 = 0.1: a prefix always runs.
        let stopped = route(router(RoutingRule(skip: .ratio(thresholds: [0.8, 0.1]))))
        XCTAssertEqual(stopped.experts, [3])
        XCTAssertEqual(stopped.gates, [1])
    }

    func testSmartExpertReduction() {
        // Always the best one; the others while p_r > 0.6 · 0.4 = 0.24: rank 2 (0.3) runs, rank 3 (0.2) not.
        let d = route(router(RoutingRule(skip: .ser(minimum: 1, threshold: 0.6))))
        XCTAssertEqual(d.experts, [3, 2])
        // minimum 2 keeps two even where the threshold would drop rank 2.
        XCTAssertEqual(route(router(RoutingRule(skip: .ser(minimum: 2, threshold: 0.9)))).experts, [3, 2])
        // t ≥ 1 is a fixed top-minimum.
        XCTAssertEqual(route(router(RoutingRule(skip: .ser(minimum: 1, threshold: 1)))).experts, [3])
    }

    func testTopPTakesTheShortestPrefixReachingP() {
        // Cumulative 0.4, 0.7, 0.9: p = 0.65 needs two, p = 0.7 two (0.7 reaches it), p = 0.71 three.
        XCTAssertEqual(route(router(RoutingRule(skip: .topP(p: 0.65)))).experts, [3, 2])
        XCTAssertEqual(route(router(RoutingRule(skip: .topP(p: 0.4)))).experts, [3])
        XCTAssertEqual(route(router(RoutingRule(skip: .topP(p: 0.71)))).experts, [3, 2, 1])
        // Without renormalisation the gates stay the raw probabilities of the experts that run.
        let raw = route(router(normalize: false, RoutingRule(skip: .topP(p: 0.65))))
        XCTAssertEqual(raw.gates[0], 0.4, accuracy: 1e-6)
        XCTAssertEqual(raw.gates[1], 0.3, accuracy: 1e-6)
    }

    func testTopPOfSigmoidScoresUsesTheirShareOfTheTotal() {
        // Sigmoid scores 0.5, 0.5, 0.5, 0.5 (total 2): p = 0.3 needs 0.6 → two experts, p = 0.25 one.
        let config = RouterConfig(expertCount: 4, topK: 3, scoring: .sigmoid, normalizeTopK: true)
        let zeros: [Float] = [0, 0, 0, 0]
        let two = zeros.withUnsafeBufferPointer { Router(config: config, rule: RoutingRule(skip: .topP(p: 0.3))).route(logits: $0) }
        XCTAssertEqual(two.experts.count, 2)
        let one = zeros.withUnsafeBufferPointer { Router(config: config, rule: RoutingRule(skip: .topP(p: 0.25))).route(logits: $0) }
        XCTAssertEqual(one.experts.count, 1)
    }

    func testSkippingWithACorrectionBiasDropsTheWeakestRawScore() {
        // Sigmoid scores of logits [2, 0, 1, -1] are 0.881, 0.5, 0.731, 0.269; with the bias the
        // choice scores are 0.881, 1.5, 0.931, 0.269, so top-3 chooses 1, 2, 0. The raw scores
        // rank 0, 2, 1: ser(1, 0.7) runs 0 and 2 (0.731 > 0.7 · 0.881 = 0.617; 0.5 is not), in
        // choice order, renormalised.
        let config = RouterConfig(expertCount: 4, topK: 3, scoring: .sigmoid, normalizeTopK: true, usesCorrectionBias: true)
        let bias: [Float] = [0, 1, 0.2, 0]
        let logits: [Float] = [2, 0, 1, -1]
        let full = logits.withUnsafeBufferPointer { Router(config: config, correctionBias: bias).route(logits: $0) }
        XCTAssertEqual(full.experts, [1, 2, 0])
        let d = logits.withUnsafeBufferPointer {
            Router(config: config, correctionBias: bias, rule: RoutingRule(skip: .ser(minimum: 1, threshold: 0.7))).route(logits: $0)
        }
        XCTAssertEqual(d.experts, [2, 0])
        let (s0, s2) = (1 / (1 + exp(Float(-2))), 1 / (1 + exp(Float(-1))))
        XCTAssertEqual(d.gates[0], s2 / (s0 + s2), accuracy: 1e-6)
        XCTAssertEqual(d.gates[1], s0 / (s0 + s2), accuracy: 1e-6)
    }

    func testRulesThatNeverFireEqualTheFamilyRouting() {
        let plain = route(router(nil))
        for rule in [RoutingRule(skip: .ratio(thresholds: [0, 0])), RoutingRule(skip: .ser(minimum: 1, threshold: 0)),
                     RoutingRule(skip: .topP(p: 1)), RoutingRule(topK: 3), RoutingRule()] {
            XCTAssertEqual(route(router(rule)), plain, "\(rule)")
        }
        // p = 1 runs every chosen expert even when the rest of the mass rounds away.
        let peaked: [Float] = [0, 0, 40, 0]
        let decision = peaked.withUnsafeBufferPointer { router(RoutingRule(skip: .topP(p: 1))).route(logits: $0) }
        XCTAssertEqual(decision.experts.count, 3)
    }

    func testTopKOverrideChoosesMoreOrFewer() {
        let two = route(router(topK: 3, RoutingRule(topK: 2)))
        XCTAssertEqual(two.experts, [3, 2])
        XCTAssertEqual(two, route(router(topK: 2, nil)))
        XCTAssertEqual(route(router(topK: 3, RoutingRule(topK: 4))).experts, [3, 2, 1, 0])
    }

    func testProblemsAreNamed() {
        XCTAssertNotNil(RoutingRule(topK: 0).problem(familyTopK: 2, routable: 8))
        XCTAssertNotNil(RoutingRule(topK: 9).problem(familyTopK: 2, routable: 8))
        XCTAssertNil(RoutingRule(topK: 8).problem(familyTopK: 2, routable: 8))
        XCTAssertNotNil(RoutingRule(skip: .ser(minimum: 3, threshold: 0.5)).problem(familyTopK: 2, routable: 8))
        XCTAssertNil(RoutingRule(topK: 4, skip: .ser(minimum: 3, threshold: 0.5)).problem(familyTopK: 2, routable: 8))
        XCTAssertNotNil(RoutingRule(skip: .topP(p: 0)).problem(familyTopK: 2, routable: 8))
        XCTAssertNotNil(RoutingRule(skip: .topP(p: 1.5)).problem(familyTopK: 2, routable: 8))
        XCTAssertNotNil(RoutingRule(skip: .ratio(thresholds: [.nan])).problem(familyTopK: 2, routable: 8))
    }

    func testScoreRatioQuantileFromTheHistogram() {
        // 100 tokens: 50 with ratio in bin 64 ([0.25, 0.2539)), 50 in bin 192. The median is the
        // upper edge of bin 64; quantile 0.25 is the middle of bin 64; 0.75 the middle of bin 192.
        var layer = LayerProfile(expertCount: 4, hiddenSize: 1, topK: 3)
        layer.tokenCount = 100
        let bins = LayerProfile.histogramBins
        layer.scoreRatioHistogram[64] = 50
        layer.scoreRatioHistogram[192] = 50
        layer.scoreRatioHistogram[bins + 10] = 100
        XCTAssertEqual(layer.scoreRatioQuantile(rank: 2, quantile: 0.5)!, 65.0 / 256, accuracy: 1e-12)
        XCTAssertEqual(layer.scoreRatioQuantile(rank: 2, quantile: 0.25)!, 64.5 / 256, accuracy: 1e-12)
        XCTAssertEqual(layer.scoreRatioQuantile(rank: 2, quantile: 0.75)!, 192.5 / 256, accuracy: 1e-12)
        // Rank 3's row: the median lies in bin 10 (this was read from rank 2's row before).
        XCTAssertEqual(layer.medianScoreRatio(rank: 3), 10.5 / 256, accuracy: 1e-12)
        XCTAssertNil(LayerProfile(expertCount: 4, hiddenSize: 1, topK: 3).scoreRatioQuantile(rank: 2, quantile: 0.5))
    }

    func testUsageCounterAveragesPerLayer() throws {
        let counter = ExpertUsageCounter()
        func observation(layer: Int, counts: [Int]) -> MoELayerObservation {
            MoELayerObservation(layer: layer, tokenCount: counts.count, expertCount: 4, hiddenSize: 1, routerLogits: [],
                                decisions: counts.map { RoutingDecision(experts: Array(0..<$0), gates: [], scores: []) },
                                expertOutputs: [], residualBefore: [], routedOutput: [], blockInput: [], runExpert: { _, _ in [] })
        }
        counter.observe(observation(layer: 1, counts: [1, 2, 3]))
        counter.observe(observation(layer: 1, counts: [2]))
        counter.observe(observation(layer: 3, counts: [4, 4]))
        XCTAssertEqual(counter.meanExpertsPerLayer, [1: 2, 3: 4])
        XCTAssertEqual(counter.meanExpertsPerToken, 3)
        XCTAssertFalse(counter.needsExpertOutputs)
    }

    func testOldPlansWithoutRulesDecode() throws {
        let map = try JSONDecoder().decode(ExpertMap.self, from: Data(#"{"slotOfExpert": [0, null, 1], "slotCount": 2}"#.utf8))
        XCTAssertNil(map.routingRule)
        var ruled = map
        ruled.routingRule = RoutingRule(topK: 1, skip: .ser(minimum: 1, threshold: 0.5))
        XCTAssertFalse(ruled.isIdentity)
        XCTAssertEqual(try JSONDecoder().decode(ExpertMap.self, from: JSONEncoder().encode(ruled)), ruled)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(map), as: UTF8.self).contains("routingRule"))
    }
}
