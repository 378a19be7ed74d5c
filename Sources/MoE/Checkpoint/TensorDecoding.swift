import CKernels
import Foundation

/// Turns a tensor's raw little-endian bytes into the forward pass's types. Shared by
/// safetensors files and derived tensors, which have bytes but no file of their own.
enum TensorDecoding {
    /// A 2-D BF16/F16 tensor copied as stored; nil for other dtypes or ranks.
    static func halfMatrix(_ bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) -> HalfMatrix? {
        let format: HalfMatrix.Format
        switch dtype {
        case .bf16: format = .bf16
        case .f16: format = .f16
        default: return nil
        }
        guard shape.count == 2 else { return nil }
        return HalfMatrix(rows: shape[0], columns: shape[1], format: format, copying: bytes)
    }

    /// Widened to Float, flattened to `[shape[0], rest]` (a 1-D tensor becomes one row).
    static func matrix(_ bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int], file: String, tensor: String) throws -> Matrix {
        let values = try floats(bytes, dtype: dtype, count: shape.reduce(1, *), file: file, tensor: tensor)
        let rows = shape.count <= 1 ? 1 : shape[0]
        let columns = shape.count == 0 ? 1 : (shape.count == 1 ? shape[0] : shape.dropFirst().reduce(1, *))
        return Matrix(rows: rows, columns: columns, values: values)
    }

    /// All `count` elements widened to Float.
    static func floats(_ bytes: UnsafeRawBufferPointer, dtype: DType, count n: Int, file: String, tensor: String) throws -> [Float] {
        switch dtype {
        case .f32:
            return [Float](unsafeUninitializedCapacity: n) { buffer, count in
                if n > 0 { memcpy(buffer.baseAddress!, bytes.baseAddress!, n * 4) }
                count = n
            }
        case .bf16, .f16:
            let halves = [UInt16](unsafeUninitializedCapacity: n) { buffer, count in
                if n > 0 { memcpy(buffer.baseAddress!, bytes.baseAddress!, n * 2) }
                count = n
            }
            return [Float](unsafeUninitializedCapacity: n) { buffer, count in
                halves.withUnsafeBufferPointer { src in
                    if dtype == .bf16 {
                        moe_bf16_to_f32(src.baseAddress, buffer.baseAddress, n)
                    } else {
                        moe_f16_to_f32(src.baseAddress, buffer.baseAddress, n)
                    }
                }
                count = n
            }
        case .f64:
            return (0..<n).map { Float(bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self)) }
        default:
            throw CheckpointError.unsupportedDType(file: file, tensor: tensor, dtype: dtype.rawValue, purpose: "floating-point weights")
        }
    }
}
