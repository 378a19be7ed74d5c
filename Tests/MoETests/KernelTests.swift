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
}
