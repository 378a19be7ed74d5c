import CKernels
import XCTest
@testable import MoE

/// The C conversion kernels against hand-computed bit patterns.
final class KernelTests: XCTestCase {
    func testHalfPrecisionWidening() {
        // 0x3C00 = 1, 0xC000 = -2, 0x7BFF = 65504 (max), 0x0001 = 2^-24 (smallest subnormal), 0x7C00 = inf.
        let bits: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555, 0x0000, 0x8000, 0x03FF]
        var out = [Float](repeating: 0, count: bits.count)
        moe_f16_to_f32(bits, &out, bits.count)
        XCTAssertEqual(Array(out[0..<5]), [1, -2, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        XCTAssertEqual(out[5], 0.33325195, accuracy: 1e-8)
        XCTAssertEqual(out[8], Float(1023) * Float(sign: .plus, exponent: -24, significand: 1))
    }

    func testBFloat16WideningAndRounding() {
        let bits: [UInt16] = [0x3F80, 0xC040, 0x4049]   // 1, -3, 3.140625
        var out = [Float](repeating: 0, count: 3)
        moe_bf16_to_f32(bits, &out, 3)
        XCTAssertEqual(out, [1, -3, 3.140625])
        var back = [UInt16](repeating: 0, count: 3)
        moe_f32_to_bf16([1, -3, Float.pi], &back, 3)
        XCTAssertEqual(back, [0x3F80, 0xC040, 0x4049])
        // Round to nearest even at the halfway point: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
        moe_f32_to_bf16([1 + 1.0 / 256], &back, 1)
        XCTAssertEqual(back[0], 0x3F80)
    }

    func testHalfRoundTripOfEveryValue() {
        // Every finite half value widens and narrows back to itself.
        let all = (0..<UInt16.max).filter { ($0 & 0x7C00) != 0x7C00 }
        var widened = [Float](repeating: 0, count: all.count)
        moe_f16_to_f32(all, &widened, all.count)
        var narrowed = [UInt16](repeating: 0, count: all.count)
        moe_f32_to_f16(widened, &narrowed, all.count)
        XCTAssertEqual(narrowed, all)
    }

    func testBF16GemvMatchesWidenedProduct() {
        let rows = 5, cols = 37
        let weights: [Float] = (0..<(rows * cols)).map { Float(($0 * 37) % 101) / 50 - 1 }
        var packed = [UInt16](repeating: 0, count: weights.count)
        moe_f32_to_bf16(weights, &packed, weights.count)
        var widened = [Float](repeating: 0, count: weights.count)
        moe_bf16_to_f32(packed, &widened, weights.count)
        let x: [Float] = (0..<cols).map { Float($0 % 5) - 2 }
        var y = [Float](repeating: 0, count: rows)
        moe_bf16_gemv(packed, x, &y, rows, cols)
        for r in 0..<rows {
            let expected = (0..<cols).reduce(Float(0)) { $0 + widened[r * cols + $1] * x[$1] }
            XCTAssertEqual(y[r], expected, accuracy: 1e-4)
        }
    }

    /// `moe_half_matmul` for several input rows, bf16 and f16, with a column count that is
    /// not a multiple of 16 (the scalar tail), against sums over the widened weights.
    func testHalfMatmulMatchesWidenedProduct() {
        let rows = 7, cols = 45
        let weights: [Float] = (0..<(rows * cols)).map { Float(($0 * 53) % 97) / 40 - 1.2 }
        for isF16: Int32 in [0, 1] {
            var packed = [UInt16](repeating: 0, count: weights.count)
            var widened = [Float](repeating: 0, count: weights.count)
            if isF16 == 1 {
                moe_f32_to_f16(weights, &packed, weights.count)
                moe_f16_to_f32(packed, &widened, weights.count)
            } else {
                moe_f32_to_bf16(weights, &packed, weights.count)
                moe_bf16_to_f32(packed, &widened, weights.count)
            }
            for n in [1, 2, 3, 5, 16] {
                let x: [Float] = (0..<(n * cols)).map { Float(($0 * 7) % 11) / 4 - 1 }
                var y = [Float](repeating: .nan, count: n * rows)
                moe_half_matmul(packed, isF16, x, &y, n, rows, cols)
                for i in 0..<n {
                    for r in 0..<rows {
                        let expected = (0..<cols).reduce(Float(0)) { $0 + widened[r * cols + $1] * x[i * cols + $1] }
                        XCTAssertEqual(y[i * rows + r], expected, accuracy: 1e-4, "f16=\(isF16) n=\(n) [\(i), \(r)]")
                    }
                }
            }
        }
    }

    /// A half-precision expert computes what the f32 expert over the same (widened) weights
    /// computes, on both sides of the row count where it switches from the half-precision
    /// kernel to widen-then-sgemm, and holds half the bytes.
    func testHalfPrecisionExpertMatchesWidenedFeedForward() {
        let hidden = 24, intermediate = 40
        func halves(_ count: Int, seed: Int) -> [UInt16] {
            let values: [Float] = (0..<count).map { Float((($0 + seed) * 31) % 89) / 200 - 0.2 }
            var packed = [UInt16](repeating: 0, count: count)
            moe_f32_to_bf16(values, &packed, count)
            return packed
        }
        let g = HalfMatrix(rows: intermediate, columns: hidden, format: .bf16, values: halves(intermediate * hidden, seed: 1))
        let u = HalfMatrix(rows: intermediate, columns: hidden, format: .bf16, values: halves(intermediate * hidden, seed: 2))
        let d = HalfMatrix(rows: hidden, columns: intermediate, format: .bf16, values: halves(hidden * intermediate, seed: 3))
        let half = HalfPrecisionExpert(gate: g, up: u, down: d)
        let full = FeedForward(gate: Matrix(rows: intermediate, columns: hidden, values: g.widenedValues()),
                               up: Matrix(rows: intermediate, columns: hidden, values: u.widenedValues()),
                               down: Matrix(rows: hidden, columns: intermediate, values: d.widenedValues()))
        XCTAssertEqual(half.residentBytes * 2, full.byteCount)
        for n in [1, HalfMatrix.kernelRowLimit, HalfMatrix.kernelRowLimit + 1, 40] {
            let x = Matrix(rows: n, columns: hidden, values: (0..<(n * hidden)).map { Float(($0 * 13) % 17) / 8 - 1 })
            let expected = full.forward(x), actual = half.forward(x)
            let worst = zip(actual.values, expected.values).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-5, "n=\(n)")
            XCTAssertGreaterThan(expected.values.map(abs).max()!, 0.01, "the test must not compare zeros")
        }
    }

    /// `moe_f32_matmul` (the 2-8-row dense kernel) against double-precision sums, with row
    /// counts that leave partial 4-row blocks, input counts that leave partial 3-input blocks,
    /// a column count with a scalar tail, and an output stride wider than the row count whose
    /// gaps must stay untouched. Every result equals the one computed for its input alone.
    func testF32MatmulMatchesDoubleSumsAndIgnoresBlocking() {
        let cols = 45
        for rows in [1, 7, 13] {
            let w: [Float] = (0..<(rows * cols)).map { Float(($0 * 53) % 97) / 40 - 1.2 }
            for n in [1, 2, 3, 4, 5, 8] {
                let x: [Float] = (0..<(n * cols)).map { Float(($0 * 7) % 11) / 4 - 1 }
                let stride = rows + 3
                var y = [Float](repeating: .nan, count: n * stride)
                moe_f32_matmul(w, x, &y, n, rows, cols, stride)
                for i in 0..<n {
                    var alone = [Float](repeating: .nan, count: rows)
                    moe_f32_matmul(w, Array(x[(i * cols)..<((i + 1) * cols)]), &alone, 1, rows, cols, rows)
                    for r in 0..<rows {
                        let expected = (0..<cols).reduce(0.0) { $0 + Double(w[r * cols + $1]) * Double(x[i * cols + $1]) }
                        XCTAssertEqual(Double(y[i * stride + r]), expected, accuracy: 1e-4, "rows=\(rows) n=\(n) [\(i), \(r)]")
                        XCTAssertEqual(y[i * stride + r].bitPattern, alone[r].bitPattern, "rows=\(rows) n=\(n) [\(i), \(r)]")
                    }
                    for gap in rows..<stride { XCTAssertTrue(y[i * stride + gap].isNaN, "stride gap written") }
                }
            }
        }
    }

    /// `LinearAlgebra.linear` on each side of its kernel switches (sgemv for one row, the small
    /// kernel up to `smallBatchLimit`, sgemm above) gives the double-precision product.
    func testLinearAcrossKernelSwitches() {
        let rows = 33, cols = 70
        let w = Matrix(rows: rows, columns: cols, values: (0..<(rows * cols)).map { Float(($0 * 29) % 83) / 30 - 1.3 })
        for n in [1, 2, LinearAlgebra.smallBatchLimit, LinearAlgebra.smallBatchLimit + 1, 20] {
            let x = Matrix(rows: n, columns: cols, values: (0..<(n * cols)).map { Float(($0 * 11) % 13) / 6 - 1 })
            let y = LinearAlgebra.linear(x, w)
            XCTAssertEqual(y.rows, n)
            XCTAssertEqual(y.columns, rows)
            for i in 0..<n {
                for r in 0..<rows {
                    let expected = (0..<cols).reduce(0.0) { $0 + Double(w.values[r * cols + $1]) * Double(x.values[i * cols + $1]) }
                    XCTAssertEqual(Double(y.values[i * rows + r]), expected, accuracy: 1e-4, "n=\(n) [\(i), \(r)]")
                }
            }
        }
        XCTAssertEqual(LinearAlgebra.linear(Matrix(zeros: 0, cols), w).values.count, 0)
    }

    /// Experts that compute on the calling thread run side by side in a step of several tokens;
    /// each result is bit-identical to running that expert alone, and f32 experts (OpenBLAS)
    /// are not run in parallel.
    func testExpertsOfABatchedStepRunInParallelWithIdenticalResults() throws {
        let hidden = 16, intermediate = 24
        func half(_ rows: Int, _ columns: Int, seed: Int) -> HalfMatrix {
            let values: [Float] = (0..<(rows * columns)).map { Float((($0 + seed) * 37) % 101) / 120 - 0.4 }
            var packed = [UInt16](repeating: 0, count: values.count)
            moe_f32_to_bf16(values, &packed, values.count)
            return HalfMatrix(rows: rows, columns: columns, format: .bf16, values: packed)
        }
        let experts: [any Expert] = (0..<6).map { e in
            HalfPrecisionExpert(gate: half(intermediate, hidden, seed: 3 * e), up: half(intermediate, hidden, seed: 3 * e + 1),
                                down: half(hidden, intermediate, seed: 3 * e + 2))
        }
        XCTAssertTrue(experts.allSatisfy(\.computesOnCallingThread))
        XCTAssertFalse(FeedForward(gate: Matrix(zeros: 2, 2), up: Matrix(zeros: 2, 2), down: Matrix(zeros: 2, 2)).computesOnCallingThread)
        let inputs = (0..<6).map { e in
            Matrix(rows: 1 + e % 3, columns: hidden, values: (0..<((1 + e % 3) * hidden)).map { Float(($0 * 5 + e) % 9) / 4 - 1 })
        }
        for _ in 0..<20 {
            let chosen = try MoEBlock.parallelExperts(Array(0..<6), rows: { inputs[$0].rows }, fetch: { experts[$0] })
            XCTAssertEqual(chosen?.count, 6, "small rows of calling-thread experts run side by side")
            let together = MoEBlock.runInParallel(experts, on: inputs)
            for (e, result) in together.enumerated() {
                XCTAssertEqual(result.values.map(\.bitPattern), experts[e].forward(inputs[e]).values.map(\.bitPattern), "expert \(e)")
            }
        }
    }
}
