/// The weight `[rows, columns]` of a linear layer, in whatever format it is kept: f32
/// (`Matrix`), BF16/F16 as stored (`HalfMatrix`), or a quantized format (Compression's
/// `QuantizedMatrix`). Dense layers, the embedding, the output head and experts all hold
/// their weights through this protocol, so memory follows the stored (or planned) format and
/// a new format is one type with its kernel.
public protocol LinearWeight: Sendable {
    var rows: Int { get }
    var columns: Int { get }
    /// Bytes this weight keeps in memory.
    var byteCount: Int { get }
    /// `x · Wᵀ`: `[n, columns] → [n, rows]`.
    func linear(_ x: Matrix) -> Matrix
    /// Rows `indices` widened to f32 (an embedding look-up).
    func gatherRows(_ indices: [Int]) -> Matrix
}

extension Matrix: LinearWeight {
    public var byteCount: Int { count * MemoryLayout<Float>.size }

    public func linear(_ x: Matrix) -> Matrix { LinearAlgebra.linear(x, self) }
}

/// How weights stored in 16-bit floats are held once loaded (experts and dense weights alike).
public enum WeightPrecision: String, Sendable, CaseIterable {
    /// Widened to f32 at load: the same numbers, in the same order, as transformers' f32
    /// path; twice the memory of BF16. Only when asked for (tests of bit-identity, users
    /// who want it).
    case float32
    /// Kept as stored (bfloat16 or IEEE half) and multiplied by half-precision kernels that
    /// widen in registers: half the memory and half the bytes read per decoded token. Sums
    /// run in f32 in another order, so logits agree with `float32` within rounding, not bitwise.
    case stored
}

/// The earlier name, from when only experts could stay 16-bit.
public typealias ExpertPrecision = WeightPrecision

extension TensorProvider {
    public func weight(_ name: String, shape: [Int], precision: WeightPrecision) throws -> any LinearWeight {
        try storedWeight(name, shape: shape, precision: precision)
    }

    /// The weight `name`, after checking that its shape is `shape`: as stored when it is
    /// BF16/F16 and `precision` is `.stored`, else widened to f32.
    public func storedWeight(_ name: String, shape expected: [Int], precision: WeightPrecision) throws -> any LinearWeight {
        let actual = try shape(name)
        guard actual == expected else {
            throw CheckpointError.wrongShape(file: location, tensor: name, expected: expected, actual: actual)
        }
        if precision == .stored, expected.count == 2, let half = try halfMatrix(name) { return half }
        return try matrix(name)
    }
}
