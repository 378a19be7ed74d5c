import CKernels

/// A row-major matrix of 16-bit floats that stays in its stored format. The bits live
/// wherever their owner keeps them: in an array this value holds, or in a memory map
/// whose lifetime `owner` extends.
public struct HalfMatrix: LinearWeight, @unchecked Sendable {
    public enum Format: Sendable { case bf16, f16 }

    public let rows: Int
    public let columns: Int
    public let format: Format
    let bits: UnsafePointer<UInt16>
    let owner: AnyObject

    /// Weights held in `values` (copied into storage this matrix owns).
    public init(rows: Int, columns: Int, format: Format, values: [UInt16]) {
        precondition(values.count == rows * columns, "half matrix \(rows) x \(columns) given \(values.count) values")
        let storage = OwnedHalves(count: values.count)
        values.withUnsafeBufferPointer { storage.pointer.initialize(from: $0.baseAddress!, count: values.count) }
        self.init(rows: rows, columns: columns, format: format, bits: storage.pointer, owner: storage)
    }

    /// Weights copied from `bytes` (`rows · columns` 16-bit values, any alignment), e.g. a
    /// tensor in a memory map whose pages the caller may release afterwards.
    public init(rows: Int, columns: Int, format: Format, copying bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == rows * columns * 2, "half matrix \(rows) x \(columns) given \(bytes.count) bytes")
        let storage = OwnedHalves(count: rows * columns)
        UnsafeMutableRawBufferPointer(start: storage.pointer, count: bytes.count).copyMemory(from: bytes)
        self.init(rows: rows, columns: columns, format: format, bits: storage.pointer, owner: storage)
    }

    /// Weights used in place at `bits` (2-byte aligned), kept valid by `owner`.
    public init(rows: Int, columns: Int, format: Format, bits: UnsafePointer<UInt16>, owner: AnyObject) {
        precondition(Int(bitPattern: bits) % 2 == 0, "half-precision weights must be 2-byte aligned")
        (self.rows, self.columns, self.format, self.bits, self.owner) = (rows, columns, format, bits, owner)
    }

    public var byteCount: Int { rows * columns * 2 }

    /// Inputs up to this many rows use the half-precision kernel (weights read once, widened
    /// in registers); larger batches widen blocks of weight rows to an f32 scratch for sgemm,
    /// which wins once the product is compute-bound rather than memory-bound.
    static let kernelRowLimit = 16

    /// Weight rows widened per sgemm block are capped at this many floats (4 MiB), so an
    /// output head of 150k rows never needs a second, f32 copy of itself.
    static let scratchFloats = 1 << 20

    /// `x · Wᵀ`: `[n, columns] → [n, rows]`.
    public func linear(_ x: Matrix) -> Matrix {
        precondition(x.columns == columns, "linear: input has \(x.columns) features, weight expects \(columns)")
        var out = Matrix(zeros: x.rows, rows)
        guard x.rows > 0, rows > 0 else { return out }
        x.values.withUnsafeBufferPointer { v in
            out.values.withUnsafeMutableBufferPointer { y in
                if x.rows <= Self.kernelRowLimit {
                    kernelProduct(v.baseAddress!, count: x.rows, into: y.baseAddress!)
                } else {
                    widenedProduct(v.baseAddress!, count: x.rows, into: y.baseAddress!)
                }
            }
        }
        return out
    }

    /// A few input rows: the half kernel, split by weight rows over the compute pool when the
    /// product is large (the output head, attention projections, a batch's expert products).
    private func kernelProduct(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        let isF16: Int32 = format == .f16 ? 1 : 0
        // The parts write disjoint columns of y and only read the weight and x.
        nonisolated(unsafe) let (w, input, output) = (bits, x, y)
        let (rows, columns) = (self.rows, self.columns)
        ComputePool.forEachRange(rows: rows, parts: ComputePool.parts(work: count * rows * columns, rows: rows)) { range in
            moe_half_matmul_strided(w + range.lowerBound * columns, isF16, input, output + range.lowerBound,
                                    count, range.count, columns, rows)
        }
    }

    /// Many input rows: widen a tile of weight rows at a time and multiply it with sgemm; tiles
    /// run side by side when the pool splits sgemm.
    private func widenedProduct(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        nonisolated(unsafe) let (input, output) = (x, y)
        let (rows, columns) = (self.rows, self.columns)
        ComputePool.forEachTile(rows: rows, columns: columns, maximumRows: Swift.max(8, Self.scratchFloats / Swift.max(columns, 1))) { scratch, tile in
            widen(rows: tile, into: scratch)
            LinearAlgebra.sgemm(input, count: count, scratch, rows: tile.count, columns: columns, into: output + tile.lowerBound, stride: rows)
        }
    }

    /// Weight rows `range` widened to f32 at `destination`.
    func widen(rows range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        let source = bits + range.lowerBound * columns
        let n = range.count * columns
        if format == .bf16 { moe_bf16_to_f32(source, destination, n) } else { moe_f16_to_f32(source, destination, n) }
    }

    public func gatherRows(_ indices: [Int]) -> Matrix {
        var out = Matrix(zeros: indices.count, columns)
        out.values.withUnsafeMutableBufferPointer { o in
            for (i, r) in indices.enumerated() {
                precondition((0..<rows).contains(r), "row \(r) of a \(rows)-row matrix")
                widen(rows: r..<(r + 1), into: o.baseAddress! + i * columns)
            }
        }
        return out
    }

    /// Every weight widened to f32, exactly as the checkpoint loader widens it.
    public func widenedValues() -> [Float] {
        let n = rows * columns
        return [Float](unsafeUninitializedCapacity: n) { buffer, count in
            if n > 0 { widen(rows: 0..<rows, into: buffer.baseAddress!) }
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

    init(count: Int) { pointer = .allocate(capacity: max(count, 1)) }

    deinit { pointer.deallocate() }
}
