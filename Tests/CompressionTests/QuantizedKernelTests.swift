import CKernels
import MoE
import XCTest
@testable import Compression

/// The packed kernels against products with the dequantized matrix, computed in Double.
final class QuantizedKernelTests: XCTestCase {
    func testGemvMatchesDequantizedProduct() throws {
        for (bits, groupSize) in allFormats {
            var g = SeededGenerator(seed: UInt64(bits * 131 + groupSize))
            let w = g.matrix(37, 256, scale: 0.1)
            let x = g.matrix(1, 256)
            let q = try QuantizedMatrix(quantizing: w, format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let reference = referenceLinear(x, q.dequantized())
            let fast = q.gemv(x.values), portable = q.gemv(x.values, portable: true)
            XCTAssertLessThan(relativeError(fast, reference), 1e-5, "\(bits)-bit g\(groupSize)")
            XCTAssertLessThan(relativeError(portable, reference), 1e-5, "\(bits)-bit g\(groupSize) portable")
            if !QuantizedActivations.supports(bits: bits, groupSize: groupSize) {
                XCTAssertEqual(q.linear(x).values, fast, "linear on one 3-bit row is the gemv")
            }
        }
    }

    /// Unit vectors pick single columns: every code position of a row, at every width, is
    /// read by the gemv exactly as the dequantizer reads it (3-bit codes straddling words too).
    func testGemvReadsEveryCodePosition() throws {
        for bits in [2, 3, 4, 8] {
            var g = SeededGenerator(seed: UInt64(bits))
            let w = g.matrix(3, 64)
            let q = try QuantizedMatrix(quantizing: w, format: QuantizationFormat(bits: bits, groupSize: 32))
            let back = q.dequantized()
            for c in 0..<64 {
                var unit = [Float](repeating: 0, count: 64)
                unit[c] = 1
                let column = q.gemv(unit), portableColumn = q.gemv(unit, portable: true)
                for r in 0..<3 {
                    XCTAssertEqual(column[r], back[r, c], accuracy: 1e-6 * max(1, abs(back[r, c])), "\(bits) bits, column \(c)")
                    XCTAssertEqual(portableColumn[r], back[r, c], accuracy: 1e-6 * max(1, abs(back[r, c])))
                }
            }
        }
    }

    func testSimdAndPortableDequantizationAgree() throws {
        for (bits, groupSize) in allFormats {
            var g = SeededGenerator(seed: UInt64(bits + groupSize))
            let q = try QuantizedMatrix(quantizing: g.matrix(5, 256), format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let fast = q.dequantized(), portable = q.dequantizedRows(0..<5, portable: true)
            for i in fast.values.indices {
                XCTAssertEqual(fast.values[i], portable.values[i], accuracy: 1e-6 * max(1, abs(portable.values[i])))
            }
            XCTAssertEqual(q.dequantizedRows(2..<4), fast.rows(2..<4))
        }
    }

    /// The batched path, with blocks small enough that rows cross several blocks (and a last
    /// partial block), equals the dequantized product.
    func testBatchedLinearMatchesDequantizedProduct() throws {
        for (bits, groupSize) in allFormats {
            var g = SeededGenerator(seed: UInt64(bits * 7 + groupSize))
            let w = g.matrix(45, 128, scale: 0.1)
            let x = g.matrix(6, 128)
            let q = try QuantizedMatrix(quantizing: w, format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let reference = referenceLinear(x, q.dequantized())
            XCTAssertLessThan(relativeError(q.linear(x, maximumBlockRows: 1 << 20).values, reference), 1e-5, "\(bits)-bit g\(groupSize)")
            XCTAssertLessThan(relativeError(q.linear(x, maximumBlockRows: 8).values, reference), 1e-5, "8-row blocks")
            XCTAssertEqual(q.linear(Matrix(zeros: 0, 128)).rows, 0)
        }
    }

    func testQuantizedExpertRunsSwiGLUOnPackedWeights() throws {
        var g = SeededGenerator(seed: 42)
        let expert = FeedForward(gate: g.matrix(64, 32, scale: 0.2), up: g.matrix(64, 32, scale: 0.2), down: g.matrix(32, 64, scale: 0.2))
        let format = try QuantizationFormat(bits: 4, groupSize: 32)
        let quantized = try QuantizedExpert(quantizing: expert, format: format)
        let reference = quantized.dequantized()
        // Up to QuantizedMatrix.integerRowLimit tokens the activations are quantized to 8 bits
        // (about 0.5% rms per value, twice: the input and the down projection's input); more
        // take the float path, exact to rounding.
        for (tokens, bound) in [(1, 3e-2), (5, 3e-2), (12, 1e-5)] {
            let x = g.matrix(tokens, 32)
            let expected = reference.forward(x).values.map(Double.init)
            XCTAssertLessThan(relativeError(quantized.forward(x).values, expected), bound, "\(tokens) tokens")
        }
        XCTAssertEqual(quantized.residentBytes, 3 * 64 * 32 / 2 + 3 * 64 * 4)
        XCTAssertEqual(quantized.residentBytes, quantized.gate.byteCount + quantized.up.byteCount + quantized.down.byteCount)
        // The quantized expert is close to the original at 4 bits (sanity, not a bound).
        let x = g.matrix(4, 32)
        XCTAssertLessThan(relativeError(quantized.forward(x).values, expert.forward(x).values.map(Double.init)), 0.2)
        XCTAssertThrowsError(try QuantizedExpert(gate: quantized.gate, up: quantized.gate, down: quantized.gate)) {
            guard case .expertShapeMismatch = $0 as? QuantizationError else { return XCTFail("\($0)") }
        }
    }

    func testKernelPathIsReported() {
        XCTAssertEqual(QuantizedMatrix.kernelUsesSIMD, moe_quant_has_simd() != 0)
    }
}
