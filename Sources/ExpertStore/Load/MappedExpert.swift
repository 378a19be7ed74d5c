import MoE

/// An f32 expert used where it lies in the store's memory map: no copy, no allocation
/// for weights. Its products go through `LinearAlgebra.linear`'s pointer form, the same
/// kernels with the same arguments, so its output is bit-identical to a `FeedForward`
/// holding the same weights.
///
/// The pointers stay valid because `owner` keeps the read transaction (and with it the
/// environment and the pages of this snapshot) alive.
struct MappedExpert: Expert, @unchecked Sendable {
    let gate: UnsafePointer<Float>   // [intermediate, hidden]
    let up: UnsafePointer<Float>     // [intermediate, hidden]
    let down: UnsafePointer<Float>   // [hidden, intermediate]
    let hidden: Int
    let intermediate: Int
    let owner: LMDBSnapshot

    func forward(_ x: Matrix) -> Matrix {
        var activation = LinearAlgebra.linear(x, gate, rows: intermediate, columns: hidden)
        Functions.swiglu(gate: &activation, up: LinearAlgebra.linear(x, up, rows: intermediate, columns: hidden))
        return LinearAlgebra.linear(activation, down, rows: hidden, columns: intermediate)
    }

    var residentBytes: Int { 3 * hidden * intermediate * MemoryLayout<Float>.size }
}
