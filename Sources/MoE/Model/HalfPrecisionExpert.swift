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
