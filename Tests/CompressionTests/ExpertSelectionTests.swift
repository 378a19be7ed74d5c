import XCTest
@testable import Compression
@testable import Routing

final class ExpertSelectionTests: XCTestCase {
    let scores: [[Double]] = [[5, 1, 4, 2], [], [0.1, 0.2, 9, 8]]

    func testUniformKeepsTheBestOfEachLayer() {
        let kept = ExpertSelection.keep(scores: scores, keepFraction: 0.5, budget: .uniform, minimumPerLayer: 1)
        XCTAssertEqual(kept, [0: [0, 2], 2: [2, 3]])
    }

    func testProtectedExpertsStay() {
        let kept = ExpertSelection.keep(scores: scores, keepFraction: 0.5, budget: .uniform, minimumPerLayer: 1,
                                        protected: [LayerExpert(layer: 0, expert: 1)])
        XCTAssertEqual(kept[0], [0, 1])     // expert 1 protected, then the best (0)
        XCTAssertEqual(kept[2], [2, 3])
    }

    func testGlobalBudgetIsNonUniform() {
        // 8 experts, keep 4 over the model with at least 1 per layer: 9, 8, 5, 4.
        let kept = ExpertSelection.keep(scores: scores, keepFraction: 0.5, budget: .global, minimumPerLayer: 1)
        XCTAssertEqual(kept, [0: [0, 2], 2: [2, 3]])
        let kept3 = ExpertSelection.keep(scores: scores, keepFraction: 3.0 / 8, budget: .global, minimumPerLayer: 1)
        XCTAssertEqual(kept3, [0: [0], 2: [2, 3]])
        // The per-layer minimum wins over the threshold.
        let skewed: [[Double]] = [[100, 90, 80, 70], [1, 2, 3, 4]]
        XCTAssertEqual(ExpertSelection.keep(scores: skewed, keepFraction: 0.5, budget: .global, minimumPerLayer: 2),
                       [0: [0, 1], 1: [2, 3]])
        XCTAssertEqual(ExpertSelection.keep(scores: skewed, keepFraction: 0.75, budget: .global, minimumPerLayer: 2),
                       [0: [0, 1, 2, 3], 1: [2, 3]])
    }

    func testMinimumPerLayer() {
        let kept = ExpertSelection.keep(scores: scores, keepFraction: 0.25, budget: .uniform, minimumPerLayer: 2)
        XCTAssertEqual(kept[0]?.count, 2)
    }
}
