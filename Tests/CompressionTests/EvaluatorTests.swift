import Foundation
import XCTest
@testable import Compression
@testable import MoE

final class EvaluatorTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    func testLogSoftmaxByHand() {
        // log softmax([0, ln 3]) = [ln ¼, ln ¾]
        let row = Evaluator.logSoftmax(Matrix(rows: 1, columns: 2, values: [0, Float(log(3.0))]), row: 0)
        XCTAssertEqual(row[0], log(0.25), accuracy: 1e-6)
        XCTAssertEqual(row[1], log(0.75), accuracy: 1e-6)
    }

    func testWindows() {
        XCTAssertEqual(Evaluator(window: 3).windows([1, 2, 3, 4, 5, 6, 7]), [[1, 2, 3], [4, 5, 6]])
        XCTAssertEqual(Evaluator(window: 3).windows([1, 2, 3, 4, 5]), [[1, 2, 3], [4, 5]])
    }

    func testModelAgainstItselfAndByHandPerplexity() throws {
        let model = try MoEModel(directory: Self.fixtures.appendingPathComponent("olmoe"))
        let ids = (0..<40).map { ($0 * 37 + 11) % 512 }
        let evaluator = Evaluator(window: 20)
        let result = try evaluator.evaluate([EvaluationCandidate(plan: "full", model: model, expertBytes: 0)], reference: model,
                                            windows: evaluator.windows(ids), data: "synthetic")[0]
        XCTAssertEqual(result.tokens, 38)
        XCTAssertEqual(result.meanKL, 0, accuracy: 1e-9)
        XCTAssertEqual(result.topOneAgreement, 1)
        XCTAssertEqual(result.perplexityChangePercent, 0, accuracy: 1e-9)
        // Perplexity by hand from the logits of the two windows.
        var nll = 0.0
        for window in evaluator.windows(ids) {
            let logits = try model.logits(window)
            for t in 0..<(window.count - 1) { nll -= Evaluator.logSoftmax(logits, row: t)[window[t + 1]] }
        }
        XCTAssertEqual(result.perplexity, exp(nll / 38), accuracy: 1e-9)
    }
}
