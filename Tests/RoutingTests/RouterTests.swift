import XCTest
@testable import Routing

/// Router semantics on hand-computed cases.
final class RouterTests: XCTestCase {
    func route(_ router: Router, _ logits: [Float]) -> RoutingDecision {
        logits.withUnsafeBufferPointer { router.route(logits: $0) }
    }

    func testSoftmaxTopKRenormalised() {
        // softmax([0, ln 2, ln 3, ln 4]) = [0.1, 0.2, 0.3, 0.4]; top-2 = {3, 2}; renormalised 4/7, 3/7.
        let router = Router(config: RouterConfig(expertCount: 4, topK: 2, scoring: .softmax, normalizeTopK: true))
        let d = route(router, [0, log(2), log(3), log(4)])
        XCTAssertEqual(d.experts, [3, 2])
        XCTAssertEqual(d.scores[0], 0.4, accuracy: 1e-6)
        XCTAssertEqual(d.scores[1], 0.3, accuracy: 1e-6)
        XCTAssertEqual(d.gates[0], 4.0 / 7, accuracy: 1e-6)
        XCTAssertEqual(d.gates[1], 3.0 / 7, accuracy: 1e-6)
    }

    func testSoftmaxWithoutRenormalisationKeepsProbabilities() {
        let router = Router(config: RouterConfig(expertCount: 4, topK: 2, scoring: .softmax, normalizeTopK: false))
        let d = route(router, [0, log(2), log(3), log(4)])
        XCTAssertEqual(d.gates[0], 0.4, accuracy: 1e-6)
        XCTAssertEqual(d.gates[1], 0.3, accuracy: 1e-6)
    }

    func testSigmoidBiasSelectsButDoesNotWeigh() {
        // Logits 0 → sigmoid 0.5 for all; the bias makes expert 1 and 3 win the selection,
        // yet the gates come from the unbiased scores: 0.5/(0.5+0.5) · 2.5 = 1.25 each.
        let config = RouterConfig(expertCount: 4, topK: 2, scoring: .sigmoid, normalizeTopK: true,
                                  normalizationEpsilon: 1e-20, scalingFactor: 2.5, usesCorrectionBias: true)
        let router = Router(config: config, correctionBias: [0, 0.3, -0.1, 0.2])
        let d = route(router, [0, 0, 0, 0])
        XCTAssertEqual(d.experts, [1, 3])
        XCTAssertEqual(d.gates[0], 1.25, accuracy: 1e-6)
        XCTAssertEqual(d.scores[0], 0.5, accuracy: 1e-6)
    }

    func testGroupLimitedSelection() {
        // Two groups of 4; group scores = sum of the two best: group 0 = 0.9+0.1, group 1 = 0.6+0.6.
        // Only group 1 may be chosen, although expert 0 has the single highest score.
        let scores: [Float] = [0.9, 0.1, 0.05, 0.05, 0.6, 0.6, 0.2, 0.1]
        let logits = scores.map { Float(log(Double($0) / (1 - Double($0)))) }   // inverse sigmoid
        let config = RouterConfig(expertCount: 8, topK: 2, scoring: .sigmoid, normalizeTopK: false,
                                  groupCount: 2, topGroupCount: 1, usesCorrectionBias: true)
        let router = Router(config: config, correctionBias: [Float](repeating: 0, count: 8))
        let d = route(router, logits)
        XCTAssertEqual(Set(d.experts), [4, 5])
        XCTAssertEqual(d.gates[0], 0.6, accuracy: 1e-5)
    }

    func testTopIndicesOrderAndTies() {
        XCTAssertEqual(Router.topIndices([1, 5, 3, 5, 2], k: 3), [1, 3, 2])
        XCTAssertEqual(Router.topIndices([0.1], k: 1), [0])
    }
}

final class ExpertMapTests: XCTestCase {
    func testPrunedRouterEqualsSlicedRouter() {
        // Pruning experts 1 and 3 of five must equal a three-expert router over rows 0, 2 and 4.
        let logits: [Float] = [0.3, 2.0, -0.5, 1.5, 0.9]
        let full = Router(config: RouterConfig(expertCount: 5, topK: 2, scoring: .softmax, normalizeTopK: false),
                          available: [true, false, true, false, true])
        let sliced = Router(config: RouterConfig(expertCount: 3, topK: 2, scoring: .softmax, normalizeTopK: false))
        let a = logits.withUnsafeBufferPointer { full.route(logits: $0) }
        let b = [logits[0], logits[2], logits[4]].withUnsafeBufferPointer { sliced.route(logits: $0) }
        XCTAssertEqual(a.experts, b.experts.map { [0, 2, 4][$0] })
        for (x, y) in zip(a.gates, b.gates) { XCTAssertEqual(x, y, accuracy: 1e-7) }
        XCTAssertEqual(a.experts, [4, 0])
    }

    func testMergedSlotsSumGates() {
        let map = ExpertMap(slotOfExpert: [0, 1, 0, nil])
        XCTAssertEqual(map.slotCount, 2)
        XCTAssertEqual(map.survivingExperts, [0, 1, 2])
        let slots = map.slots(for: RoutingDecision(experts: [2, 1, 0], gates: [0.5, 0.3, 0.2], scores: [0.5, 0.3, 0.2]))
        XCTAssertEqual(slots.map(\.slot), [0, 1])
        XCTAssertEqual(slots[0].gate, 0.7, accuracy: 1e-7)
        XCTAssertTrue(ExpertMap.identity(expertCount: 4).isIdentity)
        XCTAssertFalse(map.isIdentity)
    }
}
