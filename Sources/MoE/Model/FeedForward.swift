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

extension TensorProvider {
    /// A SwiGLU network by projection names, checking shapes: kept as stored when all three
    /// are BF16 (or all F16) and `precision` is `.stored` (`HalfPrecisionExpert`), else f32.
    public func feedForward(gate: String, up: String, down: String, hidden: Int, intermediate: Int,
                            precision: WeightPrecision) throws -> any Expert {
        let weights = try [(gate, [intermediate, hidden]), (up, [intermediate, hidden]), (down, [hidden, intermediate])].map {
            try weight($0.0, shape: $0.1, precision: precision)
        }
        if let halves = weights as? [HalfMatrix], halves.allSatisfy({ $0.format == halves[0].format }) {
            return HalfPrecisionExpert(gate: halves[0], up: halves[1], down: halves[2])
        }
        // Mixed storage: widen what came as stored, so the network is one f32 FeedForward.
        let m = weights.map { w in (w as? Matrix) ?? Matrix(rows: w.rows, columns: w.columns, values: (w as! HalfMatrix).widenedValues()) }
        return FeedForward(gate: m[0], up: m[1], down: m[2])
    }
}
