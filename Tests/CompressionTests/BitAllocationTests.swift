import Foundation
import XCTest
@testable import Compression

final class BitAllocationTests: XCTestCase {
    typealias Option = BitAllocation.Option

    /// Every combination of one option per item: the least error within budget meeting the requirements.
    func bruteForce(_ items: [[Option]], budget: Int, requirements: [BitAllocation.Requirement]) -> Double? {
        var best: Double?
        func visit(_ i: Int, cost: Int, error: Double, bits: [Int]) {
            if cost > budget { return }
            if i == items.count {
                guard requirements.allSatisfy({ r in bits.contains { r.bits.contains($0) } }) else { return }
                if best == nil || error < best! { best = error }
                return
            }
            for o in items[i] { visit(i + 1, cost: cost + o.cost, error: error + o.error, bits: bits + [o.bits]) }
        }
        visit(0, cost: 0, error: 0, bits: [])
        return best
    }

    func testAgreesWithBruteForceOnRandomInstances() throws {
        var g = SeededGenerator(seed: 31)
        var feasible = 0, infeasible = 0
        for instance in 0..<300 {
            let widths = [2, 3, 4, 8]
            let items: [[Option]] = (0..<6).map { _ in
                let parameters = Int.random(in: 1...20, using: &g) * 32
                let importance = Double.random(in: 0.1...5, using: &g)
                return widths.map { b in
                    Option(bits: b, cost: b * parameters + Int.random(in: 0...40, using: &g),
                           error: importance * pow(2, -Double(b)) * Double.random(in: 0.5...1.5, using: &g))
                }
            }
            let cheapest = items.reduce(0) { $0 + $1.map(\.cost).min()! }
            let dearest = items.reduce(0) { $0 + $1.map(\.cost).max()! }
            // Every fifth budget sits at the edge of feasibility, the others anywhere in range.
            let budget = instance % 5 == 0 ? cheapest + Int.random(in: -30...10, using: &g)
                                           : Int.random(in: (cheapest - 50)...(dearest + 50), using: &g)
            let requirements: [BitAllocation.Requirement] = switch instance % 3 {
            case 0: []
            case 1: [.init(bits: 2...2)]
            default: [.init(bits: 2...2), .init(bits: 3...3)]   // MC-MoE's constraint
            }
            let expected = bruteForce(items, budget: budget, requirements: requirements)
            do {
                let solution = try BitAllocation.solve(items, budget: budget, requirements: requirements)
                guard let expected else { return XCTFail("instance \(instance): solver found a choice brute force did not") }
                feasible += 1
                XCTAssertEqual(solution.totalError, expected, accuracy: 1e-12, "instance \(instance)")
                XCTAssertLessThanOrEqual(solution.totalCost, budget)
                XCTAssertTrue(solution.isExact)
                XCTAssertEqual(solution.totalCost, zip(items, solution.choices).reduce(0) { $0 + $1.0[$1.1].cost })
                XCTAssertEqual(solution.bits, zip(items, solution.choices).map { $0[$1].bits })
                for r in requirements { XCTAssertTrue(solution.bits.contains { r.bits.contains($0) }) }
            } catch .infeasible {
                XCTAssertNil(expected, "instance \(instance): solver missed a feasible choice")
                infeasible += 1
            }
        }
        XCTAssertGreaterThan(feasible, 200)
        XCTAssertGreaterThan(infeasible, 5)
    }

    /// Three items at 2 or 4 bits (cost 2 or 4): upgrading A gains 9, B 3, C 0.5.
    func testHandCheckedInstance() throws {
        let items: [[Option]] = [
            [Option(bits: 2, cost: 2, error: 10), Option(bits: 4, cost: 4, error: 1)],
            [Option(bits: 2, cost: 2, error: 5), Option(bits: 4, cost: 4, error: 2)],
            [Option(bits: 2, cost: 2, error: 3), Option(bits: 4, cost: 4, error: 2.5)],
        ]
        let eight = try BitAllocation.solve(items, budget: 8)
        XCTAssertEqual(eight.bits, [4, 2, 2])
        XCTAssertEqual(eight.totalError, 9)
        XCTAssertEqual(eight.totalCost, 8)
        let nine = try BitAllocation.solve(items, budget: 9)
        XCTAssertEqual(nine.bits, [4, 2, 2], "one unit short of a second upgrade")
        let ten = try BitAllocation.solve(items, budget: 10)
        XCTAssertEqual(ten.bits, [4, 4, 2])
        XCTAssertEqual(ten.totalError, 6)
        let all = try BitAllocation.solve(items, budget: 100)
        XCTAssertEqual(all.bits, [4, 4, 4])
        XCTAssertEqual(all.totalError, 5.5)
        // At least one item at 2 bits: C, the cheapest to give up.
        let required = try BitAllocation.solve(items, budget: 100, requirements: [.init(bits: 2...2)])
        XCTAssertEqual(required.bits, [4, 4, 2])
        XCTAssertThrowsError(try BitAllocation.solve(items, budget: 5)) {
            XCTAssertEqual($0 as? BitAllocation.Failure, .infeasible(budget: 5, cheapestCost: 6))
        }
        XCTAssertThrowsError(try BitAllocation.solve(items, budget: 100, requirements: [.init(bits: 8...8)])) {
            XCTAssertEqual($0 as? BitAllocation.Failure, .infeasible(budget: 100, cheapestCost: 6))
        }
    }

    func testCoarserQuantumRoundsCostsUpAndStaysWithinBudget() throws {
        let items: [[Option]] = [
            [Option(bits: 2, cost: 3, error: 4), Option(bits: 4, cost: 5, error: 1)],
            [Option(bits: 2, cost: 3, error: 4), Option(bits: 4, cost: 5, error: 1)],
        ]
        let exact = try BitAllocation.solve(items, budget: 8)
        XCTAssertEqual(exact.totalError, 5)
        XCTAssertTrue(exact.isExact)
        // With quantum 2 the costs count as 4 and 6: 3 + 5 = 8 now looks like 10 > 8.
        let coarse = try BitAllocation.solve(items, budget: 8, quantum: 2)
        XCTAssertFalse(coarse.isExact)
        XCTAssertEqual(coarse.bits, [2, 2])
        XCTAssertLessThanOrEqual(coarse.totalCost, 8)
    }

    func testInvalidInputs() {
        XCTAssertThrowsError(try BitAllocation.solve([[]], budget: 10)) { XCTAssertEqual($0 as? BitAllocation.Failure, .noOptions(item: 0)) }
        XCTAssertThrowsError(try BitAllocation.solve([[Option(bits: 2, cost: -1, error: 0)]], budget: 10)) {
            XCTAssertEqual($0 as? BitAllocation.Failure, .invalidOption(item: 0, option: 0))
        }
        XCTAssertThrowsError(try BitAllocation.solve([[Option(bits: 2, cost: 1, error: .nan)]], budget: 10))
        XCTAssertThrowsError(try BitAllocation.solve([], budget: -1)) { XCTAssertEqual($0 as? BitAllocation.Failure, .invalidBudget(-1)) }
        XCTAssertThrowsError(try BitAllocation.solve([], budget: 1, quantum: 0)) { XCTAssertEqual($0 as? BitAllocation.Failure, .invalidQuantum(0)) }
        // Coprime costs near a million with a large budget: 100 items x 10^8 units is too big.
        let coprime = (0..<100).map { _ in [Option(bits: 2, cost: 1_000_003, error: 1), Option(bits: 4, cost: 2_000_029, error: 0)] }
        XCTAssertThrowsError(try BitAllocation.solve(coprime, budget: 150_000_000)) {
            guard case .tableTooLarge = $0 as? BitAllocation.Failure else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(try BitAllocation.solve([], budget: 0).choices, [])
    }

    /// 128 experts of a Qwen3-30B-A3B-sized shape (3 x 2048 x 768 weights) at 2/3/4/8 bits in
    /// groups of 128, under a 3-bit average budget: the costs share a factor P/4, so the table
    /// is small and the exact solution takes well under a second.
    func testLargeInstanceIsFast() throws {
        var g = SeededGenerator(seed: 33)
        let parameters = 3 * 2048 * 768
        let formats = try [2, 3, 4, 8].map { try QuantizationFormat(bits: $0, groupSize: 128) }
        let items: [[Option]] = (0..<128).map { _ in
            let importance = Double.random(in: 0.01...10, using: &g)
            return formats.map { Option(format: $0, parameterCount: parameters, error: importance * pow(4, -Double($0.bits))) }
        }
        let budget = 128 * formats[1].storageBits(parameterCount: parameters)
        let start = Date()
        let solution = try BitAllocation.solve(items, budget: budget, requirements: [.init(bits: 2...2), .init(bits: 3...3)])
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertLessThan(elapsed, 1, "solved in \(elapsed) s")
        XCTAssertTrue(solution.isExact)
        XCTAssertLessThanOrEqual(solution.totalCost, budget)
        let uniform = items.reduce(0) { $0 + $1[1].error }
        XCTAssertLessThan(solution.totalError, uniform, "mixed precision beats uniform 3-bit at the same budget")
        XCTAssertTrue(solution.bits.contains(2) && solution.bits.contains(3))
        XCTAssertGreaterThan(Set(solution.bits).count, 2)
        // The total is the budget helper's 3.25 bits per weight (3 bits + a half-precision scale and minimum per 128).
        XCTAssertEqual(BitAllocation.budget(averageBits: 3.25, parameterCount: 128 * parameters), budget)
    }
}
