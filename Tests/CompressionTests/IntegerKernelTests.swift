import CKernels
import MoE
import XCTest
@testable import Compression

/// The integer kernels (packed weights against activations quantized to 8 bits) against
/// double-precision sums over the dequantized weights and the dequantized activations, on
/// both instruction-set paths, with odd row counts, every group size and 1 to 9 inputs.
final class IntegerKernelTests: XCTestCase {
    let integerFormats = allFormats.filter { QuantizedActivations.supports(bits: $0.bits, groupSize: $0.groupSize) }

    func testOnlyThreeBitCodesLackTheIntegerKernel() {
        XCTAssertEqual(Set(integerFormats.map(\.bits)), [2, 4, 8])
    }

    /// Each activation is within half a step of its block's grid, the grid's step is the
    /// block's max |x| / 127, and the stored block sums are d · Σ a.
    func testActivationQuantizationStaysWithinHalfAStep() {
        var g = SeededGenerator(seed: 5)
        var x = g.matrix(3, 96, scale: 2)
        x[1, 40] = 0
        for c in 64..<96 { x[2, c] = 0 }   // an all-zero block
        for bits in [2, 4, 8] {
            let a = QuantizedActivations(x, bits: bits)
            for r in 0..<3 {
                for b in 0..<3 {
                    let block = (b * 32)..<(b * 32 + 32)
                    let amax = block.map { abs(x[r, $0]) }.max()!
                    XCTAssertEqual(a.scales[r * 3 + b], amax / 127, accuracy: 1e-7)
                    var sum: Float = 0
                    for c in block {
                        XCTAssertLessThanOrEqual(abs(a.value(row: r, column: c) - x[r, c]), amax / 254 * 1.0001 + 1e-7, "\(bits) bits (\(r), \(c))")
                        sum += a.value(row: r, column: c)
                    }
                    XCTAssertEqual(a.blockSums[r * 3 + b], sum, accuracy: 1e-4 * max(1, abs(sum)))
                }
            }
            XCTAssertEqual(a.value(row: 2, column: 70), 0)
        }
    }

    func testIntegerProductMatchesDoubleSums() throws {
        for (bits, groupSize) in integerFormats {
            var g = SeededGenerator(seed: UInt64(bits * 17 + groupSize))
            let q = try QuantizedMatrix(quantizing: g.matrix(37, 384, scale: 0.1), format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let w = q.dequantized()
            for inputs in [1, 2, 3, 4, 5, 9] {
                let a = QuantizedActivations(g.matrix(inputs, 384), bits: bits)
                let reference = referenceLinear(a.dequantized(), w)
                XCTAssertLessThan(relativeError(q.integerLinear(a).values, reference), 1e-6, "\(bits)-bit g\(groupSize), \(inputs) inputs")
                XCTAssertLessThan(relativeError(q.integerLinear(a, portable: true).values, reference), 1e-6, "portable")
            }
        }
    }

    /// Unit activations pick single columns: each code position unpacks to the weight the
    /// dequantizer reads, in the order the activations were stored.
    func testIntegerProductReadsEveryCodePosition() throws {
        for bits in [2, 4, 8] {
            var g = SeededGenerator(seed: UInt64(bits))
            let q = try QuantizedMatrix(quantizing: g.matrix(5, 64), format: QuantizationFormat(bits: bits, groupSize: 32))
            let back = q.dequantized()
            for c in 0..<64 {
                var unit = Matrix(zeros: 1, 64)
                unit[0, c] = 1
                let a = QuantizedActivations(unit, bits: bits)
                for (path, y) in [("simd", q.integerLinear(a)), ("portable", q.integerLinear(a, portable: true))] {
                    for r in 0..<5 {
                        XCTAssertEqual(y[0, r], back[r, c], accuracy: 1e-5 * max(1, abs(back[r, c])), "\(bits) bits, column \(c), \(path)")
                    }
                }
            }
        }
    }

    /// A row's result depends only on its weight row and activation row: not on how many
    /// inputs share the call, which rows the call covers, or how many threads split it.
    func testResultsDoNotDependOnBatchOrThreads() throws {
        var g = SeededGenerator(seed: 99)
        let q = try QuantizedMatrix(quantizing: g.matrix(301, 512, scale: 0.1), format: QuantizationFormat(bits: 4, groupSize: 64))
        let x = g.matrix(6, 512)
        let together = q.integerLinear(QuantizedActivations(x, bits: 4))
        for i in 0..<6 {
            XCTAssertEqual(q.integerLinear(QuantizedActivations(x.rows(i..<(i + 1)), bits: 4)).values, together.rows(i..<(i + 1)).values)
        }
        for threads in [1, 2, 3] {
            ComputePool.withThreads(threads) {
                XCTAssertEqual(q.integerLinear(QuantizedActivations(x, bits: 4)).values, together.values, "\(threads) threads")
                XCTAssertEqual(q.linear(x), together, "linear takes the integer kernel for a few rows")
            }
        }
    }

    /// Switched off, a few rows take the float kernels (exact to rounding).
    func testIntegerKernelsCanBeSwitchedOff() throws {
        var g = SeededGenerator(seed: 11)
        let q = try QuantizedMatrix(quantizing: g.matrix(40, 128, scale: 0.1), format: QuantizationFormat(bits: 4, groupSize: 32))
        let x = g.matrix(1, 128)
        QuantizedMatrix.usesIntegerKernels = false
        defer { QuantizedMatrix.usesIntegerKernels = true }
        XCTAssertEqual(q.linear(x).values, q.gemv(x.values))
    }

    /// The integer path stays close to the float product (the activation rounding only).
    func testIntegerProductIsCloseToTheFloatProduct() throws {
        var g = SeededGenerator(seed: 3)
        for bits in [2, 4, 8] {
            let q = try QuantizedMatrix(quantizing: g.matrix(64, 256, scale: 0.1), format: QuantizationFormat(bits: bits, groupSize: 32))
            let x = g.matrix(2, 256)
            XCTAssertLessThan(relativeError(q.linear(x).values, referenceLinear(x, q.dequantized())), 1e-2, "\(bits) bits")
        }
    }
}

extension QuantizedActivations {
    /// d · a for every value, in column order: the activations the kernel multiplies.
    func dequantized() -> Matrix {
        var m = Matrix(zeros: rows, columns)
        for r in 0..<rows { for c in 0..<columns { m[r, c] = value(row: r, column: c) } }
        return m
    }
}
