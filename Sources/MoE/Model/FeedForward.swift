/// A SwiGLU feed-forward network held in f32: `down(silu(gate · x) * (up · x))`.
/// Used for dense layers, shared experts and experts loaded at full precision.
public struct FeedForward: Sendable {
    public let gate: Matrix   // [intermediate, hidden]
    public let up: Matrix     // [intermediate, hidden]
    public let down: Matrix   // [hidden, intermediate]

    public init(gate: Matrix, up: Matrix, down: Matrix) {
        precondition(gate.rows == up.rows && gate.columns == up.columns && down.columns == gate.rows && down.rows == gate.columns)
        self.gate = gate
        self.up = up
        self.down = down
    }

    /// Loads the three projections by name, checking their shapes.
    public init(from tensors: some TensorProvider, gate: String, up: String, down: String, hidden: Int, intermediate: Int) throws {
        self.init(gate: try tensors.matrix(gate, shape: [intermediate, hidden]),
                  up: try tensors.matrix(up, shape: [intermediate, hidden]),
                  down: try tensors.matrix(down, shape: [hidden, intermediate]))
    }

    public var intermediateSize: Int { gate.rows }

    public func forward(_ x: Matrix) -> Matrix {
        var activation = LinearAlgebra.linear(x, gate)
        Functions.swiglu(gate: &activation, up: LinearAlgebra.linear(x, up))
        return LinearAlgebra.linear(activation, down)
    }

    public var byteCount: Int { (gate.count + up.count + down.count) * MemoryLayout<Float>.size }
}
