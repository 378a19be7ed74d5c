import CBLAS
import CKernels

/// How experts stored in 16-bit floats are held once loaded.
public enum ExpertPrecision: String, Sendable, CaseIterable {
    /// Widened to f32 at load: the same numbers, in the same order, as the checkpoint path,
    /// so logits are bit-identical to it. Twice the memory of the stored weights.
    case float32
    /// Kept as stored (bfloat16 or IEEE half) and multiplied by half-precision kernels that
    /// widen on the fly: half the memory and half the bytes read per decoded token. Sums
    /// run in f32 in another order, so logits agree with `float32` within rounding, not bitwise.
    case stored
}

/// A row-major matrix of 16-bit floats that stays in its stored format. The bits live
/// wherever their owner keeps them: in an array this value holds, or in a memory map
/// whose lifetime `owner` extends.
public struct HalfMatrix: @unchecked Sendable {
    public enum Format: Sendable { case bf16, f16 }

    public let rows: Int
    public let columns: Int
    public let format: Format
    let bits: UnsafePointer<UInt16>
    let owner: AnyObject

    /// Weights held in `values` (copied into storage this matrix owns).
    public init(rows: Int, columns: Int, format: Format, values: [UInt16]) {
        precondition(values.count == rows * columns, "half matrix \(rows) x \(columns) given \(values.count) values")
        let storage = OwnedHalves(values)
        self.init(rows: rows, columns: columns, format: format, bits: storage.pointer, owner: storage)
    }

    /// Weights used in place at `bits` (2-byte aligned), kept valid by `owner`.
    public init(rows: Int, columns: Int, format: Format, bits: UnsafePointer<UInt16>, owner: AnyObject) {
        precondition(Int(bitPattern: bits) % 2 == 0, "half-precision weights must be 2-byte aligned")
        (self.rows, self.columns, self.format, self.bits, self.owner) = (rows, columns, format, bits, owner)
    }

    public var byteCount: Int { rows * columns * 2 }

    /// Inputs up to this many rows use the half-precision kernel (weights read once, widened
    /// in registers); larger batches widen the weights to a scratch f32 matrix for one sgemm,
    /// which wins once the product is compute-bound rather than memory-bound.
    static let kernelRowLimit = 16

    /// `x · Wᵀ`: `[n, columns] → [n, rows]`.
    public func linear(_ x: Matrix) -> Matrix {
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        var out = Matrix(zeros: x.rows, rows)
        guard x.rows > 0, rows > 0 else { return out }
        x.values.withUnsafeBufferPointer { v in
            out.values.withUnsafeMutableBufferPointer { y in
                if x.rows <= Self.kernelRowLimit {
                    moe_half_matmul(bits, format == .f16 ? 1 : 0, v.baseAddress, y.baseAddress, x.rows, rows, columns)
                } else {
                    let widened = widenedValues()
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(x.rows), Int32(rows), Int32(columns), 1,
                                v.baseAddress, Int32(columns), widened, Int32(columns), 0, y.baseAddress, Int32(rows))
                }
            }
        }
        return out
    }

    /// Every weight widened to f32, exactly as the checkpoint loader widens it.
    public func widenedValues() -> [Float] {
        let n = rows * columns
        return [Float](unsafeUninitializedCapacity: n) { buffer, count in
            if format == .bf16 { moe_bf16_to_f32(bits, buffer.baseAddress, n) } else { moe_f16_to_f32(bits, buffer.baseAddress, n) }
            count = n
        }
    }
}

extension HalfMatrix.Format {
    /// The 16-bit float format all of `dtypes` share, if they share one.
    public init?(sharedBy dtypes: [DType]) {
        if !dtypes.isEmpty && dtypes.allSatisfy({ $0 == .bf16 }) {
            self = .bf16
        } else if !dtypes.isEmpty && dtypes.allSatisfy({ $0 == .f16 }) {
            self = .f16
        } else {
            return nil
        }
    }
}

/// Storage for `HalfMatrix` values that are not used in place.
private final class OwnedHalves {
    let pointer: UnsafeMutablePointer<UInt16>

    init(_ values: [UInt16]) {
        pointer = .allocate(capacity: max(values.count, 1))
        values.withUnsafeBufferPointer { pointer.initialize(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }
}

/// A SwiGLU expert computed straight from bfloat16 or IEEE-half weights
/// (`ExpertPrecision.stored`): what an f32 `FeedForward` computes, at half the memory.
public struct HalfPrecisionExpert: Expert {
    public let gate: HalfMatrix   // [intermediate, hidden]
    public let up: HalfMatrix     // [intermediate, hidden]
    public let down: HalfMatrix   // [hidden, intermediate]

    public init(gate: HalfMatrix, up: HalfMatrix, down: HalfMatrix) {
        precondition(gate.rows == up.rows && gate.columns == up.columns && down.columns == gate.rows && down.rows == gate.columns,
                     "expert projections do not fit together")
        (self.gate, self.up, self.down) = (gate, up, down)
    }

    public func forward(_ x: Matrix) -> Matrix {
        var activation = gate.linear(x)
        Functions.swiglu(gate: &activation, up: up.linear(x))
        return down.linear(activation)
    }

    public var residentBytes: Int { gate.byteCount + up.byteCount + down.byteCount }

    /// Up to `HalfMatrix.kernelRowLimit` rows the products are the half-precision kernel's.
    public var computesOnCallingThread: Bool { true }
}
