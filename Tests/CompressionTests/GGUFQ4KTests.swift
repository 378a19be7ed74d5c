import XCTest
@testable import MoE

/// ggml's Q4_K super-block (256 values, 8 sub-blocks of 32, 6-bit scales and minimums):
/// a block whose bytes are worked out by hand from the layout in ggml-common.h, the encoder's
/// error on random weights, and the error's bound.
final class GGUFQ4KTests: XCTestCase {
    /// Sub-block j's 6-bit scales and minimums for the hand-made block; the largest of each is
    /// 63, so `d` = 63·2⁻⁶ / 63 = 2⁻⁶ and `dmin` = 2⁻⁵ exactly.
    static let sc: [Float] = [63, 1, 20, 40, 33, 17, 5, 62]
    static let m: [Float] = [0, 63, 7, 16, 50, 31, 63, 2]
    /// Codes (7l + j) mod 16: each sub-block's 32 codes contain 0 and 15, so its min–max fit is
    /// the grid itself.
    static func code(_ j: Int, _ l: Int) -> UInt8 { UInt8((7 * l + j) % 16) }

    func testHandComputedBlock() {
        let d: Float = 1.0 / 64, dmin: Float = 1.0 / 32
        let x = (0..<8).flatMap { j in (0..<32).map { l in d * Self.sc[j] * Float(Self.code(j, l)) - dmin * Self.m[j] } }
        let block = GGMLBlockEncoder.encode(x, as: .q4_K)
        XCTAssertEqual(block.count, 144)
        XCTAssertEqual(Array(block[0..<4]), [0x00, 0x24, 0x00, 0x28], "d = 2⁻⁶ (f16 0x2400), dmin = 2⁻⁵ (0x2800)")
        // Scales 4…7 are 33, 17, 5, 62: low nibbles 1, 1, 5, 14, top two bits 2, 1, 0, 3.
        // Minimums 4…7 are 50, 31, 63, 2: low nibbles 2, 15, 15, 2, top two bits 3, 1, 3, 0.
        // Bytes 0–3: sc[0…3] | top(sc[4…7])<<6 = 63|2<<6, 1|1<<6, 20|0, 40|3<<6.
        // Bytes 4–7: m[0…3] | top(m[4…7])<<6 = 0|3<<6, 63|1<<6, 7|3<<6, 16|0.
        // Bytes 8–11: low(sc[4…7]) | low(m[4…7])<<4 = 0x21, 0xF1, 0xF5, 0x2E.
        XCTAssertEqual(Array(block[4..<16]), [0xBF, 0x41, 0x14, 0xE8, 0xC0, 0x7F, 0xC7, 0x10, 0x21, 0xF1, 0xF5, 0x2E])
        // Codes: byte 32c + l holds sub-block 2c's code l (low) and sub-block 2c+1's (high).
        XCTAssertEqual(block[16], 0x10)          // codes 0 (j 0, l 0) and 1 (j 1, l 0)
        XCTAssertEqual(block[17], 0x87)          // 7 and 8 (l 1)
        XCTAssertEqual(block[16 + 32], 0x32)     // j 2 and 3, l 0
        XCTAssertEqual(block[16 + 127], 0x0F)    // j 6 and 7, l 31: (217 + 6) mod 16 = 15, 224 mod 16 = 0
        for c in 0..<4 {
            for l in 0..<32 { XCTAssertEqual(block[16 + 32 * c + l], Self.code(2 * c, l) | Self.code(2 * c + 1, l) << 4) }
        }
        // Every value is a product of powers of two and small integers: decoding is exact.
        // (These bytes also decode to x with gguf-py's gguf.quants.dequantize, checked once by hand.)
        XCTAssertEqual(GGMLBlockEncoder.decode(block, as: .q4_K, count: 256), x)
    }

    func testScalePackingRoundTripsEveryValue() {
        // Each 6-bit value in each slot, the others set to its complement, read back.
        for j in 0..<8 {
            for v in UInt8(0)..<64 {
                var sc = [UInt8](repeating: 63 - v, count: 8), m = [UInt8](repeating: v, count: 8)
                sc[j] = v
                m[j] = 63 - v
                let packed = GGMLBlockEncoder.packScalesAndMins(sc, m)
                for k in 0..<8 {
                    let read = GGMLBlockEncoder.scaleAndMin(packed[...], k)
                    XCTAssertEqual(read.sc, sc[k])
                    XCTAssertEqual(read.m, m[k])
                }
            }
        }
    }

    func testRandomWeightsStayWithinAStepOfTheirSubBlockGrid() {
        var random = SeededGenerator(seed: 44)
        let x = (0..<(16 * 256)).map { _ in 0.02 * random.normal() }
        let block = GGMLBlockEncoder.encode(x, as: .q4_K)
        XCTAssertEqual(block.count, 16 * 144)
        let y = GGMLBlockEncoder.decode(block, as: .q4_K, count: x.count)
        var squared: Float = 0, q4_1Squared: Float = 0
        let q4_1 = GGMLBlockEncoder.decode(GGMLBlockEncoder.encode(x, as: .q4_1), as: .q4_1, count: x.count)
        for s in 0..<(x.count / 32) {
            let range = (s * 32)..<((s + 1) * 32)
            // One step of the sub-block's own min–max grid (its range / 15): half a step of
            // rounding, and the rest for the 6-bit scale and minimum.
            let step = (x[range].max()! - min(0, x[range].min()!)) / 15
            for i in range {
                XCTAssertLessThanOrEqual(abs(y[i] - x[i]), step, "value \(i)")
                squared += (y[i] - x[i]) * (y[i] - x[i])
                q4_1Squared += (q4_1[i] - x[i]) * (q4_1[i] - x[i])
            }
        }
        // The 6-bit scales cost little against Q4_1's f16 scale and minimum per 32 values
        // (Q4_1's RMS error on these weights is about 0.0017).
        XCTAssertLessThan((squared / Float(x.count)).squareRoot(), 1.1 * (q4_1Squared / Float(x.count)).squareRoot())
        XCTAssertEqual(GGMLType.q4_K.byteCount([512, 3]), 2 * 144 * 3)
    }

    func testAllZeroAndAllPositiveBlocks() {
        XCTAssertEqual(GGMLBlockEncoder.encode([Float](repeating: 0, count: 256), as: .q4_K), [UInt8](repeating: 0, count: 144))
        // All positive: every grid starts at 0 (minimum 0, dmin 0), so the offset bytes are zero.
        let x = (0..<256).map { Float($0 % 32) / 8 }
        let block = GGMLBlockEncoder.encode(x, as: .q4_K)
        XCTAssertEqual(Array(block[2..<4]), [0, 0])
        let y = GGMLBlockEncoder.decode(block, as: .q4_K, count: 256)
        for i in 0..<256 { XCTAssertLessThanOrEqual(abs(y[i] - x[i]), 31.0 / 8 / 15) }
    }
}
