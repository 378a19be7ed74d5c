/// A SwiGLU expert computed straight from bfloat16 or IEEE-half weights
/// (`ExpertPrecision.stored`): what an f32 `FeedForward` computes, at half the memory.
public struct HalfPrecisionExpert: Expert {
    public let gate: HalfMatrix   // [intermediate, hidden]
    public let up: HalfMatrix     // [intermediate, hidden]
    public let down: HalfMatrix   // [hidden, intermediate]
    /// The computation, shared with experts of any weight format.
    private let network: WeightSwiGLU

    public init(gate: HalfMatrix, up: HalfMatrix, down: HalfMatrix) {
        network = WeightSwiGLU(gate: gate, up: up, down: down)
        (self.gate, self.up, self.down) = (gate, up, down)
    }

    public func forward(_ x: Matrix) -> Matrix { network.forward(x) }

    public var residentBytes: Int { network.residentBytes }

    /// Up to `HalfMatrix.kernelRowLimit` rows the products are the half-precision kernel's.
    public var computesOnCallingThread: Bool { true }
}
