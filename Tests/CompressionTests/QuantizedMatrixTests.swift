import MoE
import XCTest
@testable import Compression

final class QuantizedMatrixTests: XCTestCase {
    /// Rows with magnitudes from 1e-3 to 10, so groups see very different scales.
    func randomWeight(_ rows: Int, _ columns: Int, seed: UInt64) -> Matrix {
        var g = SeededGenerator(seed: seed)
        var w = g.matrix(rows, columns)
        for r in 0..<rows {
            let magnitude = Float(pow(10, Double.random(in: -3...1, using: &g)))
            for c in 0..<columns { w[r, c] *= magnitude }
        }
        return w
    }

    /// RTN: every weight is within half a step of its dequantized value, and each group's grid
    /// covers the group but is no wider than half-precision rounding forces.
    func testRoundTripErrorIsAtMostHalfAScale() throws {
        for (bits, groupSize) in allFormats {
            let w = randomWeight(6, 256, seed: UInt64(bits * 1000 + groupSize))
            let q = try QuantizedMatrix(quantizing: w, format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let back = q.dequantized()
            let maximumCode = Float((1 << bits) - 1)
            for r in 0..<w.rows {
                for g in 0..<q.groupsPerRow {
                    let scale = q.scale(row: r, group: g), minimum = q.minimum(row: r, group: g)
                    let columns = (g * groupSize)..<((g + 1) * groupSize)
                    let low = columns.map { w[r, $0] }.min()!, high = columns.map { w[r, $0] }.max()!
                    let epsilon = 1e-6 * (abs(minimum) + scale * maximumCode)
                    XCTAssertLessThanOrEqual(minimum, low)
                    XCTAssertGreaterThanOrEqual(minimum + scale * maximumCode, high - epsilon)
                    let tightest = (high - low + abs(low) / 1024 + 6e-8) / maximumCode
                    XCTAssertLessThanOrEqual(scale, tightest * (1 + 1.0 / 1024) + 6e-8, "\(bits)-bit g\(groupSize): grid wider than needed")
                    for c in columns {
                        XCTAssertLessThanOrEqual(abs(back[r, c] - w[r, c]), scale / 2 + epsilon,
                                                 "\(bits)-bit g\(groupSize) [\(r), \(c)]")
                        // The kernel's dequantization is the stored code on the stored grid.
                        let expected = scale * Float(q.code(row: r, column: c)) + minimum
                        XCTAssertEqual(back[r, c], expected, accuracy: epsilon)
                    }
                }
            }
        }
    }

    /// Weights already on a half-precision grid come back bit for bit, with the same codes.
    func testWeightsOnTheGridAreExact() throws {
        for (bits, groupSize) in allFormats {
            var g = SeededGenerator(seed: UInt64(7 + bits * groupSize))
            let rows = 3, columns = 256, maximumCode = (1 << bits) - 1
            var w = Matrix(zeros: rows, columns)
            var codes = [[Int]](repeating: [Int](repeating: 0, count: columns), count: rows)
            var grids = [[(scale: Float, minimum: Float)]]()
            for r in 0..<rows {
                var rowGrids = [(scale: Float, minimum: Float)]()
                for group in 0..<(columns / groupSize) {
                    // Dyadic scale and minimum: exact in half precision, and s·q + m exact in Float.
                    let scale = Float([1, 3, 5].randomElement(using: &g)!) * Float(pow(2, -Double(Int.random(in: 4...8, using: &g))))
                    let minimum = Float(Int.random(in: -64...64, using: &g)) / 64
                    rowGrids.append((scale, minimum))
                    for i in 0..<groupSize {
                        let c = group * groupSize + i
                        // The group's extremes are on the grid's ends, so RTN recovers this grid.
                        let code = i == 0 ? 0 : i == 1 ? maximumCode : Int.random(in: 0...maximumCode, using: &g)
                        codes[r][c] = code
                        w[r, c] = scale * Float(code) + minimum
                    }
                }
                grids.append(rowGrids)
            }
            let q = try QuantizedMatrix(quantizing: w, format: QuantizationFormat(bits: bits, groupSize: groupSize))
            XCTAssertEqual(q.dequantized(), w, "\(bits)-bit g\(groupSize)")
            XCTAssertEqual(q.dequantizedRows(0..<rows, portable: true), w, "\(bits)-bit g\(groupSize) portable")
            for r in 0..<rows {
                for c in 0..<columns { XCTAssertEqual(q.code(row: r, column: c), codes[r][c]) }
                for group in 0..<q.groupsPerRow {
                    XCTAssertEqual(q.scale(row: r, group: group), grids[r][group].scale)
                    XCTAssertEqual(q.minimum(row: r, group: group), grids[r][group].minimum)
                }
            }
        }
    }

    /// A constant group has scale 0 when the constant is a half-precision number, and otherwise
    /// still stays within half a (tiny) step.
    func testConstantGroups() throws {
        let format = try QuantizationFormat(bits: 4, groupSize: 32)
        let exact = try QuantizedMatrix(quantizing: Matrix(rows: 1, columns: 32, values: .init(repeating: 0.5, count: 32)), format: format)
        XCTAssertEqual(exact.scale(row: 0, group: 0), 0)
        XCTAssertEqual(exact.dequantized().values, .init(repeating: 0.5, count: 32))
        let zeros = try QuantizedMatrix(quantizing: Matrix(zeros: 1, 32), format: format)
        XCTAssertEqual(zeros.dequantized().values, .init(repeating: 0, count: 32))
        let inexact = try QuantizedMatrix(quantizing: Matrix(rows: 1, columns: 32, values: .init(repeating: 0.3, count: 32)), format: format)
        let scale = inexact.scale(row: 0, group: 0)
        XCTAssertLessThan(scale, 1e-4)
        for v in inexact.dequantized().values { XCTAssertLessThanOrEqual(abs(v - 0.3), scale / 2 + 1e-7) }
    }

    /// Byte counts: bits/8 per weight plus 4 bytes (two halfs) per group.
    func testByteCount() throws {
        for (bits, groupSize) in allFormats {
            let format = try QuantizationFormat(bits: bits, groupSize: groupSize)
            let q = try QuantizedMatrix(quantizing: Matrix(zeros: 4, 256), format: format)
            XCTAssertEqual(q.byteCount, 4 * 256 * bits / 8 + 4 * (256 / groupSize) * 4)
            XCTAssertEqual(Double(q.byteCount) / 1024, format.bytesPerParameter, accuracy: 1e-12)
            XCTAssertEqual(format.storageBits(parameterCount: 1024), 8 * q.byteCount)
        }
        XCTAssertEqual(try QuantizationFormat(bits: 4, groupSize: 128).bytesPerParameter, 0.53125)
        XCTAssertEqual(try QuantizationFormat(bits: 3, groupSize: 64).bytesPerParameter, 0.4375)
        XCTAssertEqual(try QuantizationFormat(bits: 2, groupSize: 32).bytesPerParameter, 0.375)
    }

    func testRejectsWhatTheFormatCannotHold() throws {
        XCTAssertThrowsError(try QuantizationFormat(bits: 5, groupSize: 32)) { XCTAssertEqual($0 as? QuantizationError, .unsupportedBits(5)) }
        XCTAssertThrowsError(try QuantizationFormat(bits: 4, groupSize: 48)) { XCTAssertEqual($0 as? QuantizationError, .unsupportedGroupSize(48)) }
        let format = try QuantizationFormat(bits: 4, groupSize: 32)
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: Matrix(zeros: 2, 48), format: format)) { error in
            XCTAssertEqual(error as? QuantizationError, .columnsNotDivisibleByGroupSize(columns: 48, groupSize: 32))
            XCTAssertTrue(String(describing: error).contains("48 columns is not a whole number of groups of 32"))
        }
        var w = Matrix(zeros: 2, 32)
        w[1, 5] = 70000
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: w, format: format)) {
            XCTAssertEqual($0 as? QuantizationError, .valueOutOfRange(row: 1, column: 5, value: 70000))
        }
        w[1, 5] = .nan
        XCTAssertThrowsError(try QuantizedMatrix(quantizing: w, format: format))
        XCTAssertThrowsError(try QuantizedMatrix(rows: 2, columns: 32, format: format, packed: [0], scales: [0, 0], minimums: [0, 0])) {
            XCTAssertEqual($0 as? QuantizationError, .storageMismatch(what: "packed", expected: 8, actual: 1))
        }
    }

    func testCodableRoundTrip() throws {
        let q = try QuantizedMatrix(quantizing: randomWeight(3, 64, seed: 5), format: QuantizationFormat(bits: 3, groupSize: 32))
        let decoded = try JSONDecoder().decode(QuantizedMatrix.self, from: JSONEncoder().encode(q))
        XCTAssertEqual(decoded, q)
    }
}
