import MoE
import XCTest
@testable import Compression

final class GPTQTests: XCTestCase {
    /// Correlated calibration inputs X = Z·A (a random mixing of independent features).
    func correlatedInputs(tokens: Int, features: Int, seed: UInt64) -> Matrix {
        var g = SeededGenerator(seed: seed)
        let z = g.matrix(tokens, features)
        let mixing = g.matrix(features, features, scale: 1 / Float(features).squareRoot())
        return LinearAlgebra.matmul(z, mixing)
    }

    func hessian(_ x: Matrix) -> [Double] {
        var h = InputHessian(dimension: x.columns)
        h.add(x)
        return h.values
    }

    /// ‖X·Wᵀ − X·Ŵᵀ‖²_F computed directly in Double.
    func directOutputError(_ x: Matrix, _ w: Matrix, _ quantized: Matrix) -> Double {
        zip(referenceLinear(x, w), referenceLinear(x, quantized)).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    }

    func testGPTQBeatsRoundToNearestOnCorrelatedInputs() throws {
        let x = correlatedInputs(tokens: 512, features: 128, seed: 11)
        var g = SeededGenerator(seed: 12)
        let w = g.matrix(32, 128, scale: 0.1)
        let h = hessian(x)
        for bits in [3, 4] {
            for groupSize in [32, 128] {
                let format = try QuantizationFormat(bits: bits, groupSize: groupSize)
                let rtn = try QuantizedMatrix(quantizing: w, format: format).dequantized()
                let result = try GPTQ(format: format).quantize(w, hessian: h)
                XCTAssertNil(result.fallback)
                XCTAssertEqual(result.deadInputs, 0)
                let gptq = result.matrix.dequantized()
                let rtnError = directOutputError(x, w, rtn), gptqError = directOutputError(x, w, gptq)
                XCTAssertLessThanOrEqual(gptqError, 0.7 * rtnError, "\(format): GPTQ \(gptqError) vs RTN \(rtnError)")
                // The proxy agrees with the direct error: tr(ΔW H ΔWᵀ) = 2‖XΔWᵀ‖².
                XCTAssertEqual(outputError(original: w, quantized: gptq, hessian: h), 2 * gptqError, accuracy: 1e-6 * gptqError)
            }
        }
    }

    /// With H = I the error feedback vanishes (U is diagonal), so GPTQ is RTN exactly.
    func testIdentityHessianGivesRoundToNearest() throws {
        var g = SeededGenerator(seed: 13)
        let w = g.matrix(8, 256)
        var identity = [Double](repeating: 0, count: 256 * 256)
        for i in 0..<256 { identity[i * 256 + i] = 1 }
        for (bits, groupSize) in allFormats {
            let format = try QuantizationFormat(bits: bits, groupSize: groupSize)
            let result = try GPTQ(format: format).quantize(w, hessian: identity)
            XCTAssertNil(result.fallback)
            XCTAssertEqual(result.matrix, try QuantizedMatrix(quantizing: w, format: format), "\(format)")
        }
    }

    /// Blocked lazy updates give the same codes as the textbook column-by-column algorithm.
    func testBlockedUpdatesMatchNaiveGPTQ() throws {
        let x = correlatedInputs(tokens: 300, features: 96, seed: 21)
        var g = SeededGenerator(seed: 22)
        let w = g.matrix(6, 96)
        let h = hessian(x)
        let format = try QuantizationFormat(bits: 3, groupSize: 32)
        let reference = naiveGPTQ(w, hessian: h, format: format)
        for blockSize in [32, 64, 128] {
            let q = try GPTQ(format: format, blockSize: blockSize).quantize(w, hessian: h).matrix
            var mismatches = 0
            for r in 0..<w.rows { for c in 0..<w.columns where q.code(row: r, column: c) != Int(reference.codes[r * 96 + c]) { mismatches += 1 } }
            XCTAssertEqual(mismatches, 0, "block \(blockSize)")
            XCTAssertEqual(q.scales, reference.scales)
            XCTAssertEqual(q.minimums, reference.minimums)
        }
    }

    /// The textbook algorithm: explicit inverse, upper Cholesky factor, every update applied at once.
    func naiveGPTQ(_ w: Matrix, hessian: [Double], format: QuantizationFormat) -> (codes: [UInt8], scales: [UInt16], minimums: [UInt16]) {
        let n = w.columns, out = w.rows
        var h = hessian
        let meanDiagonal = (0..<n).reduce(0.0) { $0 + h[$1 * n + $1] } / Double(n)
        for i in 0..<n { h[i * n + i] += 0.01 * meanDiagonal }
        // Gauss-Jordan inverse.
        var a = h, inverse = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inverse[i * n + i] = 1 }
        for col in 0..<n {
            let pivot = a[col * n + col]
            for k in 0..<n { a[col * n + k] /= pivot; inverse[col * n + k] /= pivot }
            for row in 0..<n where row != col {
                let f = a[row * n + col]
                for k in 0..<n { a[row * n + k] -= f * a[col * n + k]; inverse[row * n + k] -= f * inverse[col * n + k] }
            }
        }
        // Upper Cholesky: inverse = Uᵀ U.
        var u = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            var s = inverse[i * n + i]
            for k in 0..<i { s -= u[k * n + i] * u[k * n + i] }
            u[i * n + i] = s.squareRoot()
            for j in (i + 1)..<n {
                var t = inverse[i * n + j]
                for k in 0..<i { t -= u[k * n + i] * u[k * n + j] }
                u[i * n + j] = t / u[i * n + i]
            }
        }
        var weights = w.values.map(Double.init)
        var codes = [UInt8](repeating: 0, count: out * n)
        let groups = n / format.groupSize
        var scales = [UInt16](repeating: 0, count: out * groups), minimums = scales
        var grids = [AffineGrid]()
        for j in 0..<n {
            if j % format.groupSize == 0 {
                grids = (0..<out).map { r in
                    let values = (j..<(j + format.groupSize)).map { Float(weights[r * n + $0]) }
                    return AffineGrid(low: values.min()!, high: values.max()!, maximumCode: format.maximumCode)
                }
                for r in 0..<out {
                    scales[r * groups + j / format.groupSize] = grids[r].scaleBits
                    minimums[r * groups + j / format.groupSize] = grids[r].minimumBits
                }
            }
            for r in 0..<out {
                let code = grids[r].code(for: Float(weights[r * n + j]))
                codes[r * n + j] = code
                let error = (weights[r * n + j] - Double(grids[r].value(of: code))) / u[j * n + j]
                for k in (j + 1)..<n { weights[r * n + k] -= error * u[j * n + k] }
            }
        }
        return (codes, scales, minimums)
    }

    func testFallsBackToRoundToNearestWithAReason() throws {
        var g = SeededGenerator(seed: 14)
        let w = g.matrix(4, 32)
        let format = try QuantizationFormat(bits: 4, groupSize: 32)
        let rtn = try QuantizedMatrix(quantizing: w, format: format)
        // Positive diagonal, but [[1, 2], [2, 1]] in the corner has a negative eigenvalue; the
        // factorisation runs backwards, so it breaks down at column 0.
        var indefinite = [Double](repeating: 0, count: 32 * 32)
        for i in 0..<32 { indefinite[i * 32 + i] = 1 }
        indefinite[1] = 2
        indefinite[32] = 2
        let result = try GPTQ(format: format).quantize(w, hessian: indefinite)
        XCTAssertEqual(result.fallback, .hessianNotPositiveDefinite(column: 0))
        XCTAssertEqual(result.matrix, rtn)
        var notFinite = indefinite
        notFinite[5] = .nan
        XCTAssertEqual(try GPTQ(format: format).quantize(w, hessian: notFinite).fallback, .nonFiniteHessian)
        XCTAssertThrowsError(try GPTQ(format: format).quantize(w, hessian: [1, 0, 0, 1])) {
            XCTAssertEqual($0 as? QuantizationError, .hessianShapeMismatch(expected: 1024, actual: 4))
        }
    }

    /// An input never active in calibration (zero Hessian row) gets its weights zeroed.
    func testDeadInputsAreZeroed() throws {
        var x = correlatedInputs(tokens: 200, features: 64, seed: 15)
        for t in 0..<x.rows { x[t, 7] = 0 }
        var g = SeededGenerator(seed: 16)
        let w = g.matrix(5, 64)
        let result = try GPTQ(format: QuantizationFormat(bits: 4, groupSize: 32)).quantize(w, hessian: hessian(x))
        XCTAssertNil(result.fallback)
        XCTAssertEqual(result.deadInputs, 1)
        let back = result.matrix.dequantized()
        for r in 0..<5 { XCTAssertLessThanOrEqual(abs(back[r, 7]), result.matrix.scale(row: r, group: 0) / 2 + 1e-6) }
    }

    /// tr(ΔW·H·ΔWᵀ) against 2·‖X·ΔWᵀ‖² on a small case, with a weighted Hessian too.
    func testOutputErrorProxyAndHessianAccumulation() throws {
        var g = SeededGenerator(seed: 17)
        let x = g.matrix(20, 32), w = g.matrix(4, 32)
        let quantized = try QuantizedMatrix(quantizing: w, format: QuantizationFormat(bits: 2, groupSize: 32)).dequantized()
        let direct = directOutputError(x, w, quantized)
        var inTwoBatches = InputHessian(dimension: 32)
        inTwoBatches.add(x.rows(0..<7))
        inTwoBatches.add(x.rows(7..<20))
        XCTAssertEqual(inTwoBatches.tokenCount, 20)
        XCTAssertEqual(outputError(original: w, quantized: quantized, hessian: inTwoBatches.values), 2 * direct, accuracy: 1e-9 * direct)
        XCTAssertEqual(outputError(original: w, quantized: w, hessian: inTwoBatches.values), 0)

        // Weighted tokens: H = 2 Σ gₜ xₜxₜᵀ against the directly weighted sum.
        let weights = (0..<20).map { Float($0 % 4) / 2 }
        var weighted = InputHessian(dimension: 32)
        weighted.add(x, weights: weights)
        var expected = 0.0
        for t in 0..<20 {
            for r in 0..<4 {
                let change = (0..<32).reduce(0.0) { $0 + Double(x[t, $1]) * (Double(w[r, $1]) - Double(quantized[r, $1])) }
                expected += 2 * Double(weights[t]) * change * change
            }
        }
        XCTAssertEqual(outputError(original: w, quantized: quantized, hessian: weighted.values), expected, accuracy: 1e-9 * expected)

        var merged = InputHessian(dimension: 32)
        merged.add(x.rows(0..<7))
        var second = InputHessian(dimension: 32)
        second.add(x.rows(7..<20))
        merged.merge(second)
        for i in merged.values.indices { XCTAssertEqual(merged.values[i], inTwoBatches.values[i], accuracy: 1e-9) }
    }

    func testCholeskyFactors() throws {
        var g = SeededGenerator(seed: 18)
        let n = 150   // more than two blocks of the blocked factorisation, the last one partial
        let b = g.matrix(n, n)
        var a = [Double](repeating: 0, count: n * n)   // B·Bᵀ + I
        for i in 0..<n { for j in 0..<n {
            a[i * n + j] = (0..<n).reduce(i == j ? 1.0 : 0.0) { $0 + Double(b[i, $1]) * Double(b[j, $1]) }
        } }
        let l = try Cholesky.lower(a, n: n)
        let u = try Cholesky.upperFactorOfInverse(a, n: n)
        var worstProduct = 0.0
        for i in 0..<n {
            for j in 0..<n {
                if j > i { XCTAssertEqual(l[i * n + j], 0) }
                if j < i { XCTAssertEqual(u[i * n + j], 0) }
                var product = 0.0
                for k in 0...min(i, j) { product += l[i * n + k] * l[j * n + k] }
                worstProduct = max(worstProduct, abs(product - a[i * n + j]) / a[i * n + i])
            }
        }
        XCTAssertLessThan(worstProduct, 1e-12)
        // (Uᵀ·U)·A = I
        var inverse = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in 0..<n { for m in 0...min(i, k) { inverse[i * n + k] += u[m * n + i] * u[m * n + k] } } }
        var worst = 0.0
        for i in 0..<n {
            for j in 0..<n {
                var sum = 0.0
                for k in 0..<n { sum += inverse[i * n + k] * a[k * n + j] }
                worst = max(worst, abs(sum - (i == j ? 1 : 0)))
            }
        }
        XCTAssertLessThan(worst, 1e-8)
        XCTAssertThrowsError(try Cholesky.lower([1, 2, 2, 1], n: 2)) { XCTAssertEqual($0 as? Cholesky.NotPositiveDefinite, .init(pivot: 1)) }
    }
}
