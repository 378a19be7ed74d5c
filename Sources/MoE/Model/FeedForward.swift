/// A SwiGLU feed-forward network held in f32: `down(silu(gate · x) * (up · x))`.
/// Used for dense layers, shared experts and experts loaded at full precision. A routed
/// expert of a family with biases and another activation (gpt-oss) carries both:
/// `down(act(gate · x + b_g, up · x + b_u)) + b_d`, so merged and refit experts, and the
/// weights quantization starts from, compute what the family computes.
public struct FeedForward: Sendable {
    public let gate: Matrix   // [intermediate, hidden]
    public let up: Matrix     // [intermediate, hidden]
    public let down: Matrix   // [hidden, intermediate]
    public let biases: ExpertBiases?
    public let gating: ExpertFunction.Activation

    public init(gate: Matrix, up: Matrix, down: Matrix, biases: ExpertBiases? = nil, gating: ExpertFunction.Activation = .swiglu) {
        precondition(gate.rows == up.rows && gate.columns == up.columns && down.columns == gate.rows && down.rows == gate.columns)
        precondition(biases?.fits(hidden: gate.columns, intermediate: gate.rows) ?? true, "expert biases do not fit the projections")
        self.gate = gate
        self.up = up
        self.down = down
        self.biases = biases
        self.gating = gating
    }

    /// The same function (biases and activation) over other weights of the same shapes.
    public func withWeights(gate: Matrix, up: Matrix, down: Matrix, biases: ExpertBiases? = nil) -> FeedForward {
        FeedForward(gate: gate, up: up, down: down, biases: biases ?? self.biases, gating: gating)
    }

    /// Loads the three projections by name, checking their shapes.
    public init(from tensors: some TensorProvider, gate: String, up: String, down: String, hidden: Int, intermediate: Int) throws {
        self.init(gate: try tensors.matrix(gate, shape: [intermediate, hidden]),
                  up: try tensors.matrix(up, shape: [intermediate, hidden]),
                  down: try tensors.matrix(down, shape: [hidden, intermediate]))
    }

    public var intermediateSize: Int { gate.rows }

    public func forward(_ x: Matrix) -> Matrix {
        var out = LinearAlgebra.linear(activation(x), down)
        if let biases { LinearAlgebra.addBias(&out, biases.down) }
        return out
    }

    /// What the down projection sees: `silu(gate · x) * (up · x)` (with the biases and the
    /// family's activation where it has them), `[n, intermediate]`.
    public func activation(_ x: Matrix) -> Matrix {
        var activation = LinearAlgebra.linear(x, gate)
        var upOut = LinearAlgebra.linear(x, up)
        if let biases {
            LinearAlgebra.addBias(&activation, biases.gate)
            LinearAlgebra.addBias(&upOut, biases.up)
        }
        gating.apply(gate: &activation, up: upOut)
        return activation
    }

    public var byteCount: Int { (gate.count + up.count + down.count) * MemoryLayout<Float>.size + (biases?.byteCount ?? 0) }
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
        if let matrices = weights as? [Matrix] { return FeedForward(gate: matrices[0], up: matrices[1], down: matrices[2]) }
        return WeightSwiGLU(gate: weights[0], up: weights[1], down: weights[2])
    }
}

/// A SwiGLU network over weights of any format (a plan's quantized shared expert, or
/// projections stored in different dtypes): each projection runs its own kernel.
public struct WeightSwiGLU: Expert {
    public let gate: any LinearWeight   // [intermediate, hidden]
    public let up: any LinearWeight     // [intermediate, hidden]
    public let down: any LinearWeight   // [hidden, intermediate]

    public init(gate: any LinearWeight, up: any LinearWeight, down: any LinearWeight) {
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
}
