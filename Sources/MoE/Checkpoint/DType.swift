/// Element types a safetensors file may declare.
public enum DType: String, Sendable, Codable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    /// MLX's packed quantized codes.
    case u32 = "U32"
    /// 8-bit floats as the safetensors format names them: OCP E4M3 ("fn": no infinities,
    /// S.1111.111 is NaN) as DeepSeek-V3/Kimi-K2 store their linear weights, E5M2, and the
    /// unsigned power-of-two E8M0 that MX formats use for block scales. Readable (files with
    /// them parse); only E4M3 is decoded, by `FP8BlockDequantization`.
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2", f8e8m0 = "F8_E8M0"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2, .f8e8m0: return 1
        }
    }

    /// Whether the forward pass can widen this type to Float.
    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 || self == .f64 }

    /// The 8-bit float types: quantized storage that needs its scales before it means anything.
    public var isFloat8: Bool { self == .f8e4m3 || self == .f8e5m2 || self == .f8e8m0 }
}
