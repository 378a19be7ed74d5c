import CKernels

/// A weight kept in MXFP4, the OCP microscaling format gpt-oss stores its experts in: each
/// row in groups of 32 columns, a group being 16 bytes of FP4 (E2M1) codes, low nibble first,
/// and one E8M0 scale byte (value = fp4 × 2^(scale − 127)). 4.25 bits per weight, multiplied
/// by the C kernels in `mxfp4_kernels.c` without widening the weight first.
///
/// `packed` is `rows × groups × 17` bytes, each group's 16 code bytes followed by its scale
/// (the layout `mxfp4_kernels.h` describes), so a group's codes and scale are read together.
public struct MXFP4Matrix: LinearWeight {
    public static let groupSize = 32
    /// 16 code bytes and one scale byte.
    public static let groupBytes = Int(MOE_MXFP4_GROUP_BYTES)

    public let rows: Int
    public let columns: Int
    public let packed: [UInt8]

    public init(rows: Int, columns: Int, packed: [UInt8]) {
        precondition(columns % Self.groupSize == 0, "MXFP4 columns \(columns) are not a multiple of 32")
        precondition(packed.count == Self.byteCount(rows: rows, columns: columns),
                     "MXFP4 \(rows) x \(columns) needs \(Self.byteCount(rows: rows, columns: columns)) bytes, given \(packed.count)")
        (self.rows, self.columns, self.packed) = (rows, columns, packed)
    }

    public static func byteCount(rows: Int, columns: Int) -> Int { rows * (columns / groupSize) * groupBytes }

    /// How a `[rows, columns]` MXFP4 weight is stored as a tensor: U8 `[rows, columns/32, 17]`.
    public static func storedShape(rows: Int, columns: Int) -> [Int] { [rows, columns / groupSize, groupBytes] }

    /// The `[rows, columns]` of a weight stored as `dtype` `shape` in MXFP4's layout; nil for any other tensor.
    public static func logicalShape(dtype: DType, shape: [Int]) -> [Int]? {
        guard dtype == .u8, shape.count == 3, shape[2] == groupBytes else { return nil }
        return [shape[0], shape[1] * groupSize]
    }

    public var groups: Int { columns / Self.groupSize }
    public var byteCount: Int { packed.count }

    /// Inputs up to this many rows use the code kernel (the weight read once per input row,
    /// at a quarter of BF16's bytes); larger batches decode the weight once and use sgemm.
    static let kernelRowLimit = 8

    public func linear(_ x: Matrix) -> Matrix {
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        guard x.rows > Self.kernelRowLimit else { return kernelProduct(x) }
        return LinearAlgebra.linear(x, decoded())
    }

    /// Each input row through `moe_mxfp4_gemv`, weight rows split over the compute pool.
    private func kernelProduct(_ x: Matrix) -> Matrix {
        var out = Matrix(zeros: x.rows, rows)
        guard x.rows > 0, rows > 0 else { return out }
        let (rows, columns, groups) = (self.rows, self.columns, self.groups)
        packed.withUnsafeBufferPointer { w in
            x.values.withUnsafeBufferPointer { v in
                out.values.withUnsafeMutableBufferPointer { y in
                    // The parts write disjoint slices of y and only read the weight and x.
                    nonisolated(unsafe) let (weight, input, output) = (w.baseAddress!, v.baseAddress!, y.baseAddress!)
                    for n in 0..<x.rows {
                        ComputePool.forEachRange(rows: rows, parts: ComputePool.parts(work: rows * columns, rows: rows)) { range in
                            moe_mxfp4_gemv(weight, groups, range.lowerBound, range.count, input + n * columns,
                                           output + n * rows + range.lowerBound)
                        }
                    }
                }
            }
        }
        return out
    }

    /// Rows `indices` decoded to f32.
    public func gatherRows(_ indices: [Int]) -> Matrix {
        var out = Matrix(zeros: indices.count, columns)
        packed.withUnsafeBufferPointer { w in
            out.values.withUnsafeMutableBufferPointer { o in
                for (i, r) in indices.enumerated() {
                    precondition((0..<rows).contains(r), "row \(r) of a \(rows)-row matrix")
                    moe_mxfp4_decode_rows(w.baseAddress!, groups, r, 1, o.baseAddress! + i * columns)
                }
            }
        }
        return out
    }

    /// Every weight decoded to f32 (exact: FP4 values times powers of two).
    public func decoded() -> Matrix {
        var out = Matrix(zeros: rows, columns)
        guard rows > 0, columns > 0 else { return out }
        packed.withUnsafeBufferPointer { w in
            out.values.withUnsafeMutableBufferPointer { moe_mxfp4_decode_rows(w.baseAddress!, groups, 0, rows, $0.baseAddress!) }
        }
        return out
    }
}
