import MoE

/// One matrix in MLX's affine quantized layout (`mx.quantize`, mode "affine"), as mlx-lm's
/// quantized linear layers load it: `weight` uint32 `[rows, columns·bits/32]` holding the
/// codes as one least-significant-bit-first stream per row, and `scales`, `biases`
/// `[rows, columns/groupSize]`, with `w = scale·q + bias`.
///
/// MoEKit's format is the same arithmetic and the same stream (`BitPacking`), its minimum
/// being MLX's bias, so a matrix keeps its words and its f16 scales and minimums. A stacked
/// tensor needs one (bits, group size) for all its experts; a narrower or coarser matrix is
/// re-encoded into the stack's: codes shifted left by the extra bits with the scale divided
/// by the same power of two (`s·q = (s/2^k)·(q·2^k)`), and each group's scale and minimum
/// repeated over the finer groups it splits into. Both are exact while the divided scale is
/// still a normal f16, which `exact` reports.
struct MLXAffineTensor {
    var words: [UInt32]
    var scales: [UInt16]
    var biases: [UInt16]
    var rows: Int
    var columns: Int
    var bits: Int
    var groupSize: Int
    /// Whether every weight dequantizes to exactly the source matrix's value.
    var exact: Bool

    /// MLX's widths (`mx.quantize` bits) and group sizes.
    static let supportedBits: Set<Int> = [2, 3, 4, 5, 6, 8]
    static let supportedGroupSizes: Set<Int> = [32, 64, 128]

    init(_ matrix: QuantizedMatrix, bits: Int, groupSize: Int) {
        precondition(bits >= matrix.bits && matrix.groupSize % groupSize == 0, "a stack's format is the widest width and finest group")
        (rows, columns, self.bits, self.groupSize) = (matrix.rows, matrix.columns, bits, groupSize)
        let shift = bits - matrix.bits
        if shift == 0 {
            words = matrix.packed
        } else {
            let codes = BitPacking.unpack(matrix.packed, bits: matrix.bits, count: matrix.rows * matrix.columns)
            words = BitPacking.pack(codes.map { $0 << UInt8(shift) }, bits: bits)
        }
        var exact = true
        let dividedScales = matrix.scales.map { bits in
            let (divided, isExact) = Self.halfDividedByPowerOfTwo(bits, shift)
            exact = exact && isExact
            return divided
        }
        self.exact = exact
        let repeats = matrix.groupSize / groupSize
        scales = dividedScales.flatMap { repeatElement($0, count: repeats) }
        biases = matrix.minimums.flatMap { repeatElement($0, count: repeats) }
    }

    /// The f16 `bits / 2^k`: exact by lowering the exponent while the result stays normal
    /// (or the value is zero), else rounded through Float.
    static func halfDividedByPowerOfTwo(_ bits: UInt16, _ k: Int) -> (UInt16, exact: Bool) {
        guard k > 0 else { return (bits, true) }
        let exponent = Int(bits >> 10) & 0x1F
        if bits & 0x7FFF == 0 { return (bits, true) }
        if exponent > k && exponent < 0x1F { return (bits - UInt16(k << 10), true) }
        let value = Float(Float16(bitPattern: bits)) / Float(1 << k)
        let rounded = Float16(value)
        return (rounded.bitPattern, Float(rounded) == value)
    }
}
