/// The OCP 8-bit float E4M3 ("e4m3fn", PyTorch's `float8_e4m3fn`, safetensors' `F8_E4M3`):
/// 1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits; no infinities, and the one
/// all-ones pattern per sign (S.1111.111) is NaN, so the largest finite value is 448.
/// Exponent 0 holds the subnormals m × 2⁻⁹.
public enum FP8E4M3 {
    /// The value of every code, indexed by the code: decoding is one table look-up.
    public static let values: [Float] = (0...255).map { decode(UInt8($0)) }

    public static func decode(_ code: UInt8) -> Float {
        let negative = code & 0x80 != 0
        let exponent = Int((code >> 3) & 0x0F)
        let mantissa = Int(code & 0x07)
        let magnitude: Float
        if exponent == 15 && mantissa == 7 {
            magnitude = .nan
        } else if exponent == 0 {
            magnitude = Float(mantissa) * Float(sign: .plus, exponent: -9, significand: 1)
        } else {
            magnitude = Float(8 + mantissa) * Float(sign: .plus, exponent: exponent - 7 - 3, significand: 1)
        }
        return negative ? -magnitude : magnitude
    }
}
