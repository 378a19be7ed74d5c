import XCTest
@testable import Compression

final class LinearAssignmentTests: XCTestCase {
    /// All injective maps rows → columns.
    func bruteForceMinimum(_ cost: [Double], rows: Int, columns: Int) -> Double {
        var best = Double.infinity
        func visit(_ row: Int, _ used: Set<Int>, _ total: Double) {
            if row == rows { best = min(best, total); return }
            for c in 0..<columns where !used.contains(c) { visit(row + 1, used.union([c]), total + cost[row * columns + c]) }
        }
        visit(0, [], 0)
        return best
    }

    func total(_ cost: [Double], _ assignment: [Int], columns: Int) -> Double {
        assignment.enumerated().reduce(0) { $0 + cost[$1.offset * columns + $1.element] }
    }

    /// The scipy documentation example: rows take columns 1, 0, 2 for a total of 5.
    func testHandCheckedExample() {
        let cost: [Double] = [4, 1, 3, 2, 0, 5, 3, 2, 2]
        XCTAssertEqual(LinearAssignment.minimumCost(cost, rows: 3, columns: 3), [1, 0, 2])
        XCTAssertEqual(LinearAssignment.maximumWeight(cost, rows: 3, columns: 3).enumerated().reduce(0) { $0 + cost[$1.offset * 3 + $1.element] }, 11)
    }

    func testAgreesWithBruteForce() {
        var g = SeededGenerator(seed: 51)
        for _ in 0..<150 {
            let rows = Int.random(in: 1...6, using: &g)
            let columns = rows + Int.random(in: 0...1, using: &g)
            // Integer costs make ties common, which the optimum must survive.
            let integers = Bool.random(using: &g)
            let cost = (0..<(rows * columns)).map { _ in integers ? Double(Int.random(in: 0...4, using: &g)) : Double(g.normal()) }
            let assignment = LinearAssignment.minimumCost(cost, rows: rows, columns: columns)
            XCTAssertEqual(Set(assignment).count, rows, "columns are distinct")
            XCTAssertEqual(total(cost, assignment, columns: columns), bruteForceMinimum(cost, rows: rows, columns: columns), accuracy: 1e-9)
        }
    }

    func testIdentityIsOptimalForDiagonalCosts() {
        let n = 40
        var cost = [Double](repeating: 1, count: n * n)
        for i in 0..<n { cost[i * n + i] = 0 }
        XCTAssertEqual(LinearAssignment.minimumCost(cost, rows: n, columns: n), Array(0..<n))
        XCTAssertEqual(LinearAssignment.minimumCost([], rows: 0, columns: 0), [])
    }
}
