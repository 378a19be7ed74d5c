import MoE
import XCTest
@testable import Compression

final class ExpertMergingTests: XCTestCase {
    func randomExpert(hidden: Int, intermediate: Int, seed: UInt64) -> FeedForward {
        var g = SeededGenerator(seed: seed)
        return FeedForward(gate: g.matrix(intermediate, hidden, scale: 0.3), up: g.matrix(intermediate, hidden, scale: 0.3),
                           down: g.matrix(hidden, intermediate, scale: 0.3))
    }

    func testWeightNormalisation() throws {
        XCTAssertEqual(try ExpertMerging.normalizedWeights([1, 3]), [0.25, 0.75])
        XCTAssertEqual(try ExpertMerging.normalizedWeights([0, 0, 0, 0]), [0.25, 0.25, 0.25, 0.25], "no evidence: plain mean")
        XCTAssertThrowsError(try ExpertMerging.normalizedWeights([1, -1])) { XCTAssertEqual($0 as? MergingError, .invalidWeight(index: 1, value: -1)) }
        XCTAssertThrowsError(try ExpertMerging.normalizedWeights([.nan, 1]))
    }

    /// Constant experts of ones and threes, weighted 1 : 3, average to 2.5 everywhere.
    func testHandCheckedWeightedAverage() throws {
        func constant(_ v: Float) -> FeedForward {
            FeedForward(gate: Matrix(rows: 2, columns: 3, values: .init(repeating: v, count: 6)),
                        up: Matrix(rows: 2, columns: 3, values: .init(repeating: -v, count: 6)),
                        down: Matrix(rows: 3, columns: 2, values: .init(repeating: 2 * v, count: 6)))
        }
        let merged = try ExpertMerging.weightedAverage([constant(1), constant(3)], weights: [10, 30])
        XCTAssertEqual(merged.gate.values, .init(repeating: 2.5, count: 6))
        XCTAssertEqual(merged.up.values, .init(repeating: -2.5, count: 6))
        XCTAssertEqual(merged.down.values, .init(repeating: 5, count: 6))
        let single = randomExpert(hidden: 4, intermediate: 6, seed: 1)
        let alone = try ExpertMerging.weightedAverage([single], weights: [0.2])
        XCTAssertEqual(alone.gate, single.gate)
        XCTAssertEqual(alone.down, single.down)
    }

    func testPermutationKeepsTheFunction() {
        let expert = randomExpert(hidden: 8, intermediate: 12, seed: 2)
        var g = SeededGenerator(seed: 3)
        let permuted = NeuronAlignment.permuted(expert, by: Array(0..<12).shuffled(using: &g))
        let x = g.matrix(3, 8)
        let reference = expert.forward(x).values.map(Double.init)
        XCTAssertLessThan(relativeError(permuted.forward(x).values, reference), 1e-6)
    }

    /// A shuffled copy is aligned back exactly: the permutation found inverts the shuffle.
    func testAlignmentRecoversAPermutation() {
        let expert = randomExpert(hidden: 16, intermediate: 24, seed: 4)
        var g = SeededGenerator(seed: 5)
        let shuffle = Array(0..<24).shuffled(using: &g)
        let shuffled = NeuronAlignment.permuted(expert, by: shuffle)
        let found = NeuronAlignment.permutation(aligning: shuffled, to: expert)
        // Anchor neuron i is shuffled neuron j where shuffle[j] == i.
        for i in 0..<24 { XCTAssertEqual(shuffle[found[i]], i) }
        let realigned = NeuronAlignment.aligned(shuffled, to: expert)
        XCTAssertEqual(realigned.gate, expert.gate)
        XCTAssertEqual(realigned.up, expert.up)
        XCTAssertEqual(realigned.down, expert.down)
    }

    /// Merging an expert with its shuffled copy gives the expert back only with alignment.
    func testAlignedMergeOfAPermutedCopyReproducesTheExpert() throws {
        let expert = randomExpert(hidden: 16, intermediate: 32, seed: 6)
        var g = SeededGenerator(seed: 7)
        let shuffled = NeuronAlignment.permuted(expert, by: Array(0..<32).shuffled(using: &g))
        let x = g.matrix(5, 16)
        let reference = expert.forward(x).values.map(Double.init)
        let aligned = try ExpertMerging.alignedAverage([expert, shuffled], weights: [0.4, 0.6], anchor: 0)
        XCTAssertLessThan(relativeError(aligned.forward(x).values, reference), 1e-5)
        let alignedToCopy = try ExpertMerging.alignedAverage([expert, shuffled], weights: [3, 1], anchor: 1)
        XCTAssertLessThan(relativeError(alignedToCopy.forward(x).values, reference), 1e-5)
        let unaligned = try ExpertMerging.weightedAverage([expert, shuffled], weights: [0.4, 0.6])
        XCTAssertGreaterThan(relativeError(unaligned.forward(x).values, reference), 0.1)
    }

    func testInvalidMerges() {
        let a = randomExpert(hidden: 4, intermediate: 6, seed: 8), b = randomExpert(hidden: 4, intermediate: 8, seed: 9)
        XCTAssertThrowsError(try ExpertMerging.weightedAverage([], weights: [])) { XCTAssertEqual($0 as? MergingError, .noExperts) }
        XCTAssertThrowsError(try ExpertMerging.weightedAverage([a, a], weights: [1])) {
            XCTAssertEqual($0 as? MergingError, .weightCount(experts: 2, weights: 1))
        }
        XCTAssertThrowsError(try ExpertMerging.weightedAverage([a, b], weights: [1, 1])) { XCTAssertEqual($0 as? MergingError, .shapeMismatch(index: 1)) }
        XCTAssertThrowsError(try ExpertMerging.alignedAverage([a, a], weights: [1, 1], anchor: 2)) { XCTAssertEqual($0 as? MergingError, .anchorOutOfRange(2)) }
        XCTAssertThrowsError(try ExpertMerging.alignedAverage([a, b], weights: [1, 1], anchor: 0)) { XCTAssertEqual($0 as? MergingError, .shapeMismatch(index: 1)) }
    }
}
