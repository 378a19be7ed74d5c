import XCTest
@testable import Compression

final class BitPackingTests: XCTestCase {
    /// Every code value survives packing at every width, including runs that straddle words.
    func testEveryCodeRoundTripsAtEveryWidth() {
        for bits in [2, 3, 4, 8] {
            let count = 3 * (1 << bits) + 7   // every code thrice, and not a whole number of words
            let codes = (0..<count).map { UInt8(($0 * 5 + 3) % (1 << bits)) }
            XCTAssertEqual(Set(codes).count, 1 << bits, "pattern covers every code at \(bits) bits")
            let words = BitPacking.pack(codes, bits: bits)
            XCTAssertEqual(words.count, (count * bits + 31) / 32)
            XCTAssertEqual(BitPacking.unpack(words, bits: bits, count: count), codes, "\(bits) bits")
        }
    }

    /// Hand-computed 3-bit layout: code 10 occupies stream bits 30-32 and code 21 bits 63-65.
    func testThreeBitCodesCrossWordBoundaries() {
        var codes = [UInt8](repeating: 0, count: 32)
        codes[10] = 0b101   // bits 30, 31 of word 0 get 1, 0; bit 0 of word 1 gets 1
        codes[21] = 0b011   // bit 31 of word 1 gets 1; bits 0, 1 of word 2 get 1, 0
        XCTAssertEqual(BitPacking.pack(codes, bits: 3), [0x4000_0000, 0x8000_0001, 0x0000_0001])
        XCTAssertEqual(BitPacking.code(in: [0x4000_0000, 0x8000_0001, 0x0000_0001], at: 10, bits: 3), 5)
        XCTAssertEqual(BitPacking.code(in: [0x4000_0000, 0x8000_0001, 0x0000_0001], at: 21, bits: 3), 3)
    }

    /// Hand-computed 2-, 4- and 8-bit layouts: least significant bits first.
    func testLeastSignificantBitsFirst() {
        XCTAssertEqual(BitPacking.pack([1, 2, 3, 0, 3], bits: 2), [0b11_00_11_10_01])
        XCTAssertEqual(BitPacking.pack([0x1, 0x2, 0xF, 0, 0, 0, 0, 0xA], bits: 4), [0xA000_0F21])
        XCTAssertEqual(BitPacking.pack([0x12, 0x34, 0x56, 0x78, 0x9A], bits: 8), [0x7856_3412, 0x9A])
    }
}
