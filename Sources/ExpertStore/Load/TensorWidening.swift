import CKernels
import MoE

/// Turns a record's raw tensor bytes into f32 values the same way `SafetensorsFile` does
/// (the same C widening kernels), so a model run from the store is bit-identical to one
/// run from the checkpoint.
enum TensorWidening {
    static func floats(_ bytes: UnsafeRawBufferPointer, layout: TensorLayout, record: String, store: String) throws -> [Float] {
        let n = layout.elementCount
        guard n > 0 else { return [] }
        let source = bytes.baseAddress!
        switch layout.dtype {
        case .f32:
            return [Float](unsafeUninitializedCapacity: n) { buffer, count in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(start: source, count: n * 4))
                count = n
            }
        case .bf16, .f16:
            // The kernels read uint16_t, which needs 2-byte alignment; LMDB only promises
            // that for values on their own pages, so copy small, oddly placed ones first.
            let widen = { (halves: UnsafePointer<UInt16>) -> [Float] in
                [Float](unsafeUninitializedCapacity: n) { buffer, count in
                    if layout.dtype == .bf16 { moe_bf16_to_f32(halves, buffer.baseAddress, n) } else { moe_f16_to_f32(halves, buffer.baseAddress, n) }
                    count = n
                }
            }
            if Int(bitPattern: source) % 2 == 0 { return widen(source.assumingMemoryBound(to: UInt16.self)) }
            let copy = (0..<n).map { bytes.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self) }
            return copy.withUnsafeBufferPointer { widen($0.baseAddress!) }
        case .f64:
            return (0..<n).map { Float(bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self)) }
        default:
            throw StoreError.unsupportedDType(path: store, record: record, dtype: layout.dtype.rawValue, purpose: "floating-point weights")
        }
    }

    /// The tensor as a matrix, flattened like `SafetensorsFile.matrix`: `[shape[0], rest]`,
    /// a 1-D tensor as one row, a scalar as 1 × 1.
    static func matrix(_ bytes: UnsafeRawBufferPointer, layout: TensorLayout, record: String, store: String) throws -> Matrix {
        let shape = layout.shape
        let rows = shape.count <= 1 ? 1 : shape[0]
        let columns = shape.isEmpty ? 1 : (shape.count == 1 ? shape[0] : shape.dropFirst().reduce(1, *))
        return Matrix(rows: rows, columns: columns, values: try floats(bytes, layout: layout, record: record, store: store))
    }
}
