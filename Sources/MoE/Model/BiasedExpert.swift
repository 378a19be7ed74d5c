/// A routed expert whose projections each add a bias, with its family's activation
/// (`ExpertFunction`): gpt-oss's `down(clampedSwiGLU(gate · x + b_g, up · x + b_u)) + b_d`.
/// The weights keep their own format and kernels (BF16 as stored, f32 widened).
public struct BiasedExpert: Expert {
    public let gate: any LinearWeight   // [intermediate, hidden]
    public let up: any LinearWeight     // [intermediate, hidden]
    public let down: any LinearWeight   // [hidden, intermediate]
    public let gateBias: [Float]        // [intermediate]
    public let upBias: [Float]          // [intermediate]
    public let downBias: [Float]        // [hidden]
    public let activation: ExpertFunction.Activation

    public init(gate: any LinearWeight, up: any LinearWeight, down: any LinearWeight,
                gateBias: [Float], upBias: [Float], downBias: [Float], activation: ExpertFunction.Activation) {
        precondition(gate.rows == up.rows && gate.columns == up.columns && down.columns == gate.rows && down.rows == gate.columns,
                     "expert projections do not fit together")
        precondition(gateBias.count == gate.rows && upBias.count == up.rows && downBias.count == down.rows,
                     "expert biases do not fit the projections")
        (self.gate, self.up, self.down) = (gate, up, down)
        (self.gateBias, self.upBias, self.downBias) = (gateBias, upBias, downBias)
        self.activation = activation
    }

    public func forward(_ x: Matrix) -> Matrix {
        var activated = gate.linear(x)
        LinearAlgebra.addBias(&activated, gateBias)
        var upOut = up.linear(x)
        LinearAlgebra.addBias(&upOut, upBias)
        activation.apply(gate: &activated, up: upOut)
        var out = down.linear(activated)
        LinearAlgebra.addBias(&out, downBias)
        return out
    }

    public var residentBytes: Int {
        gate.byteCount + up.byteCount + down.byteCount + (gateBias.count + upBias.count + downBias.count) * MemoryLayout<Float>.size
    }

    /// Half-precision weights compute on the calling thread (as `HalfPrecisionExpert`); f32
    /// ones go to OpenBLAS.
    public var computesOnCallingThread: Bool { [gate, up, down].allSatisfy { $0 is HalfMatrix } }
}

extension TensorProvider {
    /// Routed expert `e` of layer `l` as its family computes it: a plain SwiGLU network, or
    /// one with biases and its activation (`ExpertFunction`).
    public func routedExpert(layer l: Int, index e: Int, description: ModelDescription,
                             precision: WeightPrecision) throws -> any Expert {
        let moe = description.layers[l].moe!
        let names = description.names
        let (h, f) = (description.hiddenSize, moe.expertIntermediateSize)
        let function = moe.expertFunction
        if function == .swiglu {
            return try feedForward(gate: names.expert(l, e, .gate), up: names.expert(l, e, .up), down: names.expert(l, e, .down),
                                   hidden: h, intermediate: f, precision: precision)
        }
        let weights = try [(Projection.gate, [f, h]), (.up, [f, h]), (.down, [h, f])].map {
            try weight(names.expert(l, e, $0.0), shape: $0.1, precision: precision)
        }
        let biases = try Projection.allCases.map { p in
            function.hasBias ? try vector(names.expertBias(l, e, p), count: p == .down ? h : f)
                             : [Float](repeating: 0, count: p == .down ? h : f)
        }
        return BiasedExpert(gate: weights[0], up: weights[1], down: weights[2],
                            gateBias: biases[0], upBias: biases[1], downBias: biases[2], activation: function.activation)
    }
}
