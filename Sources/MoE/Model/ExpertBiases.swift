/// The biases a routed expert adds after each projection (gpt-oss: `…gate_up_proj_bias`,
/// `…down_proj_bias`), held in f32 whatever the checkpoint stored. Compressed experts keep
/// them next to their weights: quantization leaves them as they are, merging averages them
/// with the members' weights, neuron alignment permutes gate and up with their neurons.
public struct ExpertBiases: Sendable, Equatable {
    public var gate: [Float]   // [intermediate]
    public var up: [Float]     // [intermediate]
    public var down: [Float]   // [hidden]

    public init(gate: [Float], up: [Float], down: [Float]) {
        precondition(gate.count == up.count, "gate and up biases differ in length")
        (self.gate, self.up, self.down) = (gate, up, down)
    }

    /// Gate, up, down, as records store them after the three projections.
    public var all: [[Float]] { [gate, up, down] }

    public var byteCount: Int { (gate.count + up.count + down.count) * MemoryLayout<Float>.size }

    /// Whether they fit an expert of `intermediate` neurons on `hidden` features.
    public func fits(hidden: Int, intermediate: Int) -> Bool {
        gate.count == intermediate && up.count == intermediate && down.count == hidden
    }
}

extension ExpertFunction.Activation {
    /// `act(gate, up)` in place of `gate`: the nonlinearity between the projections.
    public func apply(gate: inout Matrix, up: Matrix) {
        switch self {
        case .swiglu: Functions.swiglu(gate: &gate, up: up)
        case let .clampedSwiGLU(alpha, limit): Functions.clampedSwiGLU(gate: &gate, up: up, alpha: alpha, limit: limit)
        }
    }
}
