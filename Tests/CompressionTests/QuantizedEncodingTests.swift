import MoE
import XCTest
@testable import Compression

final class QuantizedEncodingTests: XCTestCase {
    func testRoundTripEveryFormat() throws {
        for (bits, groupSize) in allFormats {
            var g = SeededGenerator(seed: UInt64(bits ^ groupSize))
            let q = try QuantizedMatrix(quantizing: g.matrix(3, 256), format: QuantizationFormat(bits: bits, groupSize: groupSize))
            let bytes = q.encoded()
            XCTAssertEqual(bytes.count, 16 + q.byteCount)
            XCTAssertEqual(bytes.count, q.encodedByteCount)
            XCTAssertEqual(try QuantizedMatrix(decoding: bytes), q)
            XCTAssertEqual(try QuantizedMatrix(decoding: bytes[...]), q, "any collection of bytes")
        }
    }

    /// The header, byte by byte, for a 2 x 32 matrix at 4 bits in groups of 32.
    func testHeaderLayout() throws {
        let q = try QuantizedMatrix(quantizing: Matrix(zeros: 2, 32), format: QuantizationFormat(bits: 4, groupSize: 32))
        let bytes = q.encoded()
        XCTAssertEqual(Array(bytes[0..<16]), [0x4D, 0x4B, 0x51, 0x4D, 1, 4, 32, 0, 2, 0, 0, 0, 32, 0, 0, 0])
        XCTAssertEqual(bytes.count, 16 + 2 * 32 / 2 + 2 * 2 + 2 * 2)
    }

    func testCorruptRecordsAreRejected() throws {
        var g = SeededGenerator(seed: 3)
        let bytes = try QuantizedMatrix(quantizing: g.matrix(2, 64), format: QuantizationFormat(bits: 3, groupSize: 32)).encoded()
        func expect(_ corrupt: [UInt8], _ check: (QuantizationError) -> Bool, line: UInt = #line) {
            XCTAssertThrowsError(try QuantizedMatrix(decoding: corrupt), line: line) { error in
                XCTAssertTrue(check(error as! QuantizationError), "\(error)", line: line)
            }
        }
        func malformed(_ fragment: String) -> (QuantizationError) -> Bool {
            { if case .malformedEncoding(let reason) = $0 { reason.contains(fragment) } else { false } }
        }
        expect(Array(bytes.dropLast()), malformed("truncated"))
        expect(bytes + [0], malformed("1 trailing bytes"))
        expect(Array(bytes.prefix(10)), malformed("header"))
        var badMagic = bytes
        badMagic[0] = 0x58
        expect(badMagic, malformed("magic"))
        var badVersion = bytes
        badVersion[4] = 2
        expect(badVersion, malformed("version 2"))
        var badBits = bytes
        badBits[5] = 5
        expect(badBits, { $0 == .unsupportedBits(5) })
        var badColumns = bytes
        badColumns[12] = 40
        expect(badColumns, { $0 == .columnsNotDivisibleByGroupSize(columns: 40, groupSize: 32) })
    }

    func testExpertRecordRoundTrip() throws {
        var g = SeededGenerator(seed: 9)
        let expert = FeedForward(gate: g.matrix(64, 32), up: g.matrix(64, 32), down: g.matrix(32, 64))
        let quantized = try QuantizedExpert(quantizing: expert, format: QuantizationFormat(bits: 3, groupSize: 32))
        let bytes = quantized.encoded()
        XCTAssertEqual(bytes.count, 3 * 16 + quantized.residentBytes)
        let decoded = try QuantizedExpert(decoding: bytes)
        XCTAssertEqual(decoded.gate, quantized.gate)
        XCTAssertEqual(decoded.up, quantized.up)
        XCTAssertEqual(decoded.down, quantized.down)
        XCTAssertThrowsError(try QuantizedExpert(decoding: bytes.dropLast(1)))
        XCTAssertThrowsError(try QuantizedExpert(decoding: bytes + [1, 2]))
    }
}
