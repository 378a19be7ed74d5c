import XCTest
@testable import Routing

/// The profiler's sums on a hand-computed two-token, three-expert case.
final class ProfilerTests: XCTestCase {
    /// Token 0 → experts 0, 1 (gates 0.6, 0.4; raw scores 0.5, 0.3), outputs [3,4] and [0,1], residual [1,0].
    /// Token 1 → experts 2, 1 (gates 0.7, 0.3; raw scores 0.7, 0.2), outputs [1,0] and [0,2], residual [0,1].
    func observation(tokens: Range<Int> = 0..<2) -> MoELayerObservation {
        let logits: [[Float]] = [[2, 1, 0], [0, 1, 3]]
        let decisions = [RoutingDecision(experts: [0, 1], gates: [0.6, 0.4], scores: [0.5, 0.3]),
                         RoutingDecision(experts: [2, 1], gates: [0.7, 0.3], scores: [0.7, 0.2])]
        let outputs: [[Float]] = [[3, 4, 0, 1], [1, 0, 0, 2]]
        let residual: [[Float]] = [[1, 0], [0, 1]]
        let routed: [[Float]] = [[1.8, 2.8], [0.7, 0.6]]
        return MoELayerObservation(
            layer: 0, tokenCount: tokens.count, expertCount: 3, hiddenSize: 2,
            routerLogits: tokens.flatMap { logits[$0] }, decisions: tokens.map { decisions[$0] },
            expertOutputs: tokens.flatMap { outputs[$0] }, residualBefore: tokens.flatMap { residual[$0] },
            routedOutput: tokens.flatMap { routed[$0] }, blockInput: [Float](repeating: 0, count: 2 * tokens.count),
            runExpert: { expert, rows in rows.flatMap { _ in [Float(expert), 1] } })
    }

    func accumulator(stride: Int = 1) -> ProfileAccumulator {
        ProfileAccumulator(modelFingerprint: "test", source: "hand", moeLayers: [(experts: 3, hidden: 2, topK: 2)], denseSampleStride: stride)
    }

    func testSumsMatchHandComputation() throws {
        let profiler = accumulator()
        try profiler.observe(observation())
        let layer = try XCTUnwrap(profiler.profile.layers[0])
        XCTAssertEqual(layer.tokenCount, 2)
        let (e0, e1, e2) = (layer.experts[0], layer.experts[1], layer.experts[2])
        XCTAssertEqual(e0.count, 1); XCTAssertEqual(e1.count, 2); XCTAssertEqual(e2.count, 1)
        XCTAssertEqual(e0.gateSum, 0.6, accuracy: 1e-7)
        XCTAssertEqual(e1.gateSum, 0.7, accuracy: 1e-7)
        XCTAssertEqual(e1.scoreSum, 0.5, accuracy: 1e-7)
        XCTAssertEqual(e0.gateNormSum, 3.0, accuracy: 1e-6)          // 0.6 · ‖[3,4]‖
        XCTAssertEqual(e1.gateNormSum, 1.0, accuracy: 1e-6)          // 0.4 · 1 + 0.3 · 2
        XCTAssertEqual(e0.normSum, 5); XCTAssertEqual(e0.normSquaredSum, 25)
        XCTAssertEqual(e1.normSquaredSum, 5)
        XCTAssertEqual(e0.gateSquaredNormSquaredSum, 9, accuracy: 1e-6)
        // u0 = 1 − cos([1,0], [2.8,2.8]) = 1 − 1/√2; u1 = 1 − cos([0,1], [0.7,1.6]).
        let u0 = 1 - 1 / 2.0.squareRoot()
        let u1 = 1 - 1.6 / (0.49 + 2.56).squareRoot()
        XCTAssertEqual(e0.easyEPSum, 0.6 * 5 * u0, accuracy: 1e-6)
        XCTAssertEqual(e1.easyEPSum, 0.4 * 1 * u0 + 0.3 * 2 * u1, accuracy: 1e-6)
        XCTAssertEqual(e2.easyEPSum, 0.7 * 1 * u1, accuracy: 1e-6)
        XCTAssertEqual(e0.topOneLogitSum, 2); XCTAssertEqual(e2.topOneLogitSum, 3); XCTAssertEqual(e1.topOneCount, 0)
        XCTAssertEqual(e2.logitSum, 3); XCTAssertEqual(e2.logitSquaredSum, 9)
        XCTAssertEqual(layer.coActivation, [1, 1, 0, 1, 2, 1, 0, 1, 1])
        XCTAssertEqual(layer.logitGram, [4, 2, 0, 2, 2, 3, 0, 3, 9])
        XCTAssertEqual(e0.maxAbsOutput, 4); XCTAssertEqual(e0.maxAbsOutputChannel, 1)
        XCTAssertEqual(layer.residualMax, 1); XCTAssertEqual(layer.residualMaxChannel, 0)
        XCTAssertEqual(layer.routedOutputSum, [3, 4, 0, 3, 1, 0])
        XCTAssertEqual(layer.scoreRatioHistogram[153], 1)               // 0.3 / 0.5 = 0.6
        XCTAssertEqual(layer.scoreRatioHistogram[73], 1)                // 0.2 / 0.7
        XCTAssertEqual(layer.denseTokenCount, 2)
        XCTAssertEqual(layer.denseOutputMean(2), [2, 1])
    }

    func testDerivedCriteria() throws {
        let profiler = accumulator()
        try profiler.observe(observation())
        let c = profiler.profile.criteria()[0]
        XCTAssertEqual(c[1].reap, 0.5, accuracy: 1e-7)                 // Σ g‖E‖ / n = 1.0 / 2
        XCTAssertEqual(c[1].ean, 1.5, accuracy: 1e-7)
        XCTAssertEqual(c[0].tcess, 1.0, accuracy: 1e-7)                // 2 / T
        XCTAssertEqual(c[2].tcess, 1.5, accuracy: 1e-7)
        // MoNE: mean of E1 = [0, 1.5]; Σ‖E − mean‖² = 0.5; φ = √(0.5 / 1); s = 0.7 / 2.
        XCTAssertEqual(c[1].moneDeviation, 0.5.squareRoot(), accuracy: 1e-7)
        XCTAssertEqual(c[1].moneRedundancy, 0.35 * 0.5.squareRoot(), accuracy: 1e-7)
        XCTAssertEqual(c[1].routedMeanNorm, 1.5, accuracy: 1e-7)
        XCTAssertEqual(c[1].mcmoeActivationShare, 0.5, accuracy: 1e-7) // 2 of 4 slots
        XCTAssertEqual(c[0].mcmoeScoreShare, 0.5 / 1.7, accuracy: 1e-7)
        XCTAssertEqual(c[1].slotShare, 0.5, accuracy: 1e-7)
        let layer = profiler.profile.layers[0]!
        XCTAssertEqual(layer.logitCosine(1, 2), 3 / (2 * 9.0).squareRoot(), accuracy: 1e-7)
        XCTAssertEqual(layer.routingEntropy, 1.5, accuracy: 1e-7)        // shares ¼, ½, ¼
        // Maxima 4, 2, 1: the threshold is max(P99.5 = 3.985, 4 / 10), so only expert 0 is flagged.
        XCTAssertEqual(profiler.profile.superExperts(layerFraction: 1), [LayerExpert(layer: 0, expert: 0)])
    }

    func testProfilesMergeExactly() throws {
        let whole = accumulator()
        try whole.observe(observation(tokens: 0..<2))
        let first = accumulator(), second = accumulator()
        try first.observe(observation(tokens: 0..<1))
        try second.observe(observation(tokens: 1..<2))
        var merged = first.profile
        try merged.merge(second.profile)
        merged.source = whole.profile.source
        XCTAssertEqual(merged, whole.profile)
    }

    func testMergeRejectsOtherModels() {
        var a = accumulator().profile
        let b = ProfileAccumulator(modelFingerprint: "other", source: "", moeLayers: [(experts: 3, hidden: 2, topK: 2)]).profile
        XCTAssertThrowsError(try a.merge(b))
    }

    func testJensenShannon() {
        XCTAssertEqual(jensenShannonDivergence([1, 0], [0, 1]), 1, accuracy: 1e-12)
        XCTAssertEqual(jensenShannonDivergence([0.5, 0.5], [0.5, 0.5]), 0, accuracy: 1e-12)
        // JSD([1,0],[½,½]) = ½·KL([1,0]‖[¾,¼]) + ½·KL([½,½]‖[¾,¼]) = ½ log2(4/3) + ¼ log2(2/3) + ¼ log2(2)
        let expected = 0.5 * log2(4.0 / 3) + 0.25 * log2(2.0 / 3) + 0.25
        XCTAssertEqual(jensenShannonDivergence([1, 0], [0.5, 0.5]), expected, accuracy: 1e-12)
    }

    func testPercentileMatchesNumpy() {
        // numpy.percentile([1, 2, 3, 4], 99.5) = 3.985
        XCTAssertEqual(RoutingProfile.percentile([4, 1, 3, 2], 99.5), 3.985, accuracy: 1e-12)
    }
}

final class HeatmapTests: XCTestCase {
    func testColoursAndCells() {
        let map = ProfileHeatmap(title: "a<b", values: [[0, 1], [2, 4]], layerLabels: ["0", "1"], signed: false)
        XCTAssertEqual(map.color(0, low: 0, high: 4), "#ffffff")
        XCTAssertEqual(map.color(4, low: 0, high: 4), "#08306b")
        let svg = map.svg()
        XCTAssertEqual(svg.components(separatedBy: "<title>").count - 1, 4)     // one cell per (layer, expert)
        XCTAssertTrue(svg.contains("a&lt;b"))
        XCTAssertTrue(svg.contains("<title>1, expert 1: 4</title>"))          // the caller's layer label, once
        let diverging = ProfileHeatmap(title: "", values: [[-2, 2]], layerLabels: ["0"], signed: true)
        XCTAssertEqual(diverging.color(2, low: -2, high: 2), "#2166ac")
        XCTAssertEqual(diverging.color(-2, low: -2, high: 2), "#b2182b")
        XCTAssertEqual(diverging.color(0, low: -2, high: 2), "#ffffff")
    }
}
