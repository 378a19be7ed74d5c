import CKernels
import MoE

/// A few rows of activations quantized to 8 bits per block of 32 values, once per product,
/// for the integer dot products of `moe_quant_matmul_q8` (llama.cpp's scheme for decode).
/// The values of each block are stored in the order `bits`-bit weight codes unpack in.
struct QuantizedActivations {
    let rows: Int
    let columns: Int
    let bits: Int
    private(set) var values: [Int8]
    /// Per block: the scale d (max |x| / 127) and d · Σ of the block's values.
    private(set) var scales: [Float]
    private(set) var blockSums: [Float]

    /// Whether `bits`-bit weights with groups of `groupSize` have the integer kernel.
    static func supports(bits: Int, groupSize: Int) -> Bool {
        moe_q8_supports(UInt32(bits)) != 0 && groupSize % 32 == 0
    }

    init(_ x: Matrix, bits: Int) {
        precondition(x.columns % 32 == 0, "8-bit activations need a multiple of 32 columns, got \(x.columns)")
        (rows, columns, self.bits) = (x.rows, x.columns, bits)
        let blocks = x.rows * moe_q8_block_count(x.columns)
        values = [Int8](repeating: 0, count: x.count)
        scales = [Float](repeating: 0, count: blocks)
        blockSums = [Float](repeating: 0, count: blocks)
        moe_q8_quantize_activations(x.values, x.rows, x.columns, UInt32(bits), &values, &scales, &blockSums)
    }

    /// Activation `column` of `row`, dequantized (d · a): what the integer kernel multiplies.
    func value(row: Int, column: Int) -> Float {
        let block = column / 32
        let position = block * 32 + moe_q8_activation_order(UInt32(bits), column % 32)
        return scales[row * (columns / 32) + block] * Float(values[row * columns + position])
    }
}
