/// Why a matrix could not be quantized, or quantized data could not be read back.
public enum QuantizationError: Error, Sendable, Equatable, CustomStringConvertible {
    case unsupportedBits(Int)
    case unsupportedGroupSize(Int)
    case negativeShape(rows: Int, columns: Int)
    /// Every row is cut into whole groups; a ragged last group is not supported.
    case columnsNotDivisibleByGroupSize(columns: Int, groupSize: Int)
    /// Scales and minimums are half precision, so weights must be finite and within ±65504.
    case valueOutOfRange(row: Int, column: Int, value: Float)
    /// Raw storage whose array lengths do not match the shape and format.
    case storageMismatch(what: String, expected: Int, actual: Int)
    /// Serialised bytes that are not a quantized matrix of this version.
    case malformedEncoding(String)
    /// Three projections that do not form one SwiGLU expert.
    case expertShapeMismatch(String)
    /// A Hessian of the wrong size for GPTQ.
    case hessianShapeMismatch(expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .unsupportedBits(let bits):
            "unsupported quantization width \(bits) bits (supported: \(QuantizationFormat.supportedBits.sorted()))"
        case .unsupportedGroupSize(let size):
            "unsupported group size \(size) (supported: \(QuantizationFormat.supportedGroupSizes.sorted()))"
        case .negativeShape(let rows, let columns):
            "a matrix cannot have shape \(rows)x\(columns)"
        case .columnsNotDivisibleByGroupSize(let columns, let groupSize):
            "a row of \(columns) columns is not a whole number of groups of \(groupSize)"
        case .valueOutOfRange(let row, let column, let value):
            "weight [\(row), \(column)] = \(value) is not finite or exceeds the half-precision range of scales and minimums"
        case .storageMismatch(let what, let expected, let actual):
            "quantized storage: \(what) has \(actual) elements, expected \(expected)"
        case .malformedEncoding(let reason):
            "malformed quantized matrix encoding: \(reason)"
        case .expertShapeMismatch(let reason):
            "quantized expert: \(reason)"
        case .hessianShapeMismatch(let expected, let actual):
            "GPTQ: the Hessian has \(actual) entries, expected \(expected) (inputs²)"
        }
    }
}
