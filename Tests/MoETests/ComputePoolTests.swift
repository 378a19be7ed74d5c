import CKernels
import Dispatch
import Synchronization
import XCTest
@testable import MoE

/// The compute pool: every task runs exactly once, nesting and concurrent callers are safe,
/// and products split over it give the same bits at any thread count.
final class ComputePoolTests: XCTestCase {
    func testEveryTaskRunsExactlyOnce() {
        for threads in [1, 2, 3, 5] {
            ComputePool.withThreads(threads) {
                XCTAssertEqual(ComputePool.threads, threads)
                for count in [0, 1, 2, 7, 100] {
                    let runs = Mutex([Int](repeating: 0, count: count))
                    ComputePool.forEach(count) { i in runs.withLock { $0[i] += 1 } }
                    XCTAssertEqual(runs.withLock { $0 }, [Int](repeating: 1, count: count), "\(threads) threads, \(count) tasks")
                }
            }
        }
    }

    func testRangesCoverEveryRowOnce() {
        ComputePool.withThreads(3) {
            for (rows, parts) in [(10, 3), (7, 7), (5, 8), (1000, 2)] {
                let covered = Mutex([Int](repeating: 0, count: rows))
                ComputePool.forEachRange(rows: rows, parts: parts) { range in covered.withLock { for r in range { $0[r] += 1 } } }
                XCTAssertEqual(covered.withLock { $0 }, [Int](repeating: 1, count: rows), "\(rows) rows in \(parts) parts")
            }
        }
    }

    /// A task that splits its own work runs it inline; callers on several threads at once
    /// each get all of their tasks run (one of them on the pool, the others inline).
    func testNestedAndConcurrentCalls() {
        ComputePool.withThreads(2) {
            let total = Mutex(0)
            ComputePool.forEach(4) { _ in ComputePool.forEach(5) { _ in total.withLock { $0 += 1 } } }
            XCTAssertEqual(total.withLock { $0 }, 20)
            let concurrent = Mutex(0)
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                ComputePool.forEach(50) { _ in concurrent.withLock { $0 += 1 } }
            }
            XCTAssertEqual(concurrent.withLock { $0 }, 400)
        }
    }

    /// BF16 and f32 products of a few rows (decode: MoEKit's own kernels) give identical bits
    /// on 1, 2 and 3 threads, since each output row is summed the same way in any split.
    /// Larger batches (prefill) go to OpenBLAS's sgemm in column blocks, and sgemm picks its
    /// kernels by shape (small-matrix and edge kernels sum in other orders), so there the
    /// split moves results by rounding only.
    func testProductsDoNotDependOnThreadCount() {
        var state: UInt64 = 7
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 40) - (1 << 23)) / Float(1 << 23)
        }
        let (rows, columns) = (517, 256)
        let weights = (0..<(rows * columns)).map { _ in next() }
        var halves = [UInt16](repeating: 0, count: weights.count)
        moe_f32_to_bf16(weights, &halves, weights.count)
        let half = HalfMatrix(rows: rows, columns: columns, format: .bf16, values: halves)
        let full = Matrix(rows: rows, columns: columns, values: half.widenedValues())
        for count in [1, 3, 8, 12, 40] {
            let x = Matrix(rows: count, columns: columns, values: (0..<(count * columns)).map { _ in next() })
            let expected = ComputePool.withThreads(1) { (half.linear(x), LinearAlgebra.linear(x, full)) }
            for threads in [2, 3] {
                let (h, f) = ComputePool.withThreads(threads) { (half.linear(x), LinearAlgebra.linear(x, full)) }
                if count <= LinearAlgebra.smallBatchLimit {
                    XCTAssertTrue(h == expected.0, "bf16, \(count) rows, \(threads) threads")
                    XCTAssertTrue(f == expected.1, "f32, \(count) rows, \(threads) threads")
                } else {
                    XCTAssertLessThan(maximumRelativeDifference(h, expected.0), 1e-5, "bf16, \(count) rows, \(threads) threads")
                    XCTAssertLessThan(maximumRelativeDifference(f, expected.1), 1e-5, "f32, \(count) rows, \(threads) threads")
                }
            }
        }
    }

    private func maximumRelativeDifference(_ a: Matrix, _ b: Matrix) -> Float {
        let scale = b.values.map(abs).max() ?? 1
        return zip(a.values, b.values).map { abs($0 - $1) }.max().map { $0 / max(scale, 1e-30) } ?? 0
    }
}
