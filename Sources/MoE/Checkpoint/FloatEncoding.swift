import CKernels

/// f32 values as the little-endian bytes of a float dtype, rounded to nearest, ties to even
/// (NaNs stay NaN): how an export writes weights it computed in f32 (dequantized codes,
/// merged experts) in the checkpoint's own dtype instead of a wider one.
public enum FloatEncoding {
    /// The float dtypes an export writes.
    public static func isWritable(_ dtype: DType) -> Bool { dtype == .f32 || dtype == .bf16 || dtype == .f16 }

    public static func bytes(_ values: [Float], as dtype: DType) -> [UInt8] {
        precondition(isWritable(dtype), "\(dtype.rawValue) is not a float dtype an export writes")
        switch dtype {
        case .bf16, .f16:
            var halves = [UInt16](repeating: 0, count: values.count)
            values.withUnsafeBufferPointer { src in
                halves.withUnsafeMutableBufferPointer { dst in
                    if dtype == .bf16 {
                        moe_f32_to_bf16(src.baseAddress, dst.baseAddress, values.count)
                    } else {
                        moe_f32_to_f16(src.baseAddress, dst.baseAddress, values.count)
                    }
                }
            }
            return halves.withUnsafeBytes { Array($0) }
        default:
            return values.withUnsafeBytes { Array($0) }
        }
    }
}
