import MoE

/// A routed expert whose three projections are quantized: `down(silu(gate·x) ⊙ up·x)`, each
/// product computed from packed codes. An expert of a family with biases and another
/// activation (gpt-oss) keeps its biases in f32 next to the codes and applies them and its
/// activation exactly as the f32 expert does (`FeedForward`), so the quantized expert computes
/// what its dequantized weights compute.
public struct QuantizedExpert: Expert {
    public let gate: QuantizedMatrix   // [intermediate, hidden]
    public let up: QuantizedMatrix     // [intermediate, hidden]
    public let down: QuantizedMatrix   // [hidden, intermediate]
    public let biases: ExpertBiases?
    public let gating: ExpertFunction.Activation

    public init(gate: QuantizedMatrix, up: QuantizedMatrix, down: QuantizedMatrix,
                biases: ExpertBiases? = nil, gating: ExpertFunction.Activation = .swiglu) throws(QuantizationError) {
        guard gate.rows == up.rows, gate.columns == up.columns else {
            throw .expertShapeMismatch("gate is \(gate.rows)x\(gate.columns) but up is \(up.rows)x\(up.columns)")
        }
        guard down.rows == gate.columns, down.columns == gate.rows else {
            throw .expertShapeMismatch("down is \(down.rows)x\(down.columns), expected \(gate.columns)x\(gate.rows)")
        }
        if let biases, !biases.fits(hidden: gate.columns, intermediate: gate.rows) {
            throw .expertShapeMismatch("biases are \(biases.gate.count), \(biases.up.count), \(biases.down.count) long, expected \(gate.rows), \(gate.rows), \(gate.columns)")
        }
        self.gate = gate
        self.up = up
        self.down = down
        self.biases = biases
        self.gating = gating
    }

    /// Round-to-nearest quantization of every projection in one format; biases and activation kept.
    public init(quantizing expert: FeedForward, format: QuantizationFormat) throws(QuantizationError) {
        try self.init(gate: QuantizedMatrix(quantizing: expert.gate, format: format),
                      up: QuantizedMatrix(quantizing: expert.up, format: format),
                      down: QuantizedMatrix(quantizing: expert.down, format: format),
                      biases: expert.biases, gating: expert.gating)
    }

    public var intermediateSize: Int { gate.rows }
    public var hiddenSize: Int { gate.columns }

    public func forward(_ x: Matrix) -> Matrix {
        var activation: Matrix
        var upOut: Matrix
        if gate.format == up.format && gate.takesIntegerKernel(inputRows: x.rows) {
            // Decode: gate and up read the same input, quantized to 8 bits once for both.
            let input = QuantizedActivations(x, bits: gate.bits)
            activation = gate.integerLinear(input)
            upOut = up.integerLinear(input)
        } else {
            activation = gate.linear(x)
            upOut = up.linear(x)
        }
        if let biases {
            LinearAlgebra.addBias(&activation, biases.gate)
            LinearAlgebra.addBias(&upOut, biases.up)
        }
        gating.apply(gate: &activation, up: upOut)
        var out = down.linear(activation)
        if let biases { LinearAlgebra.addBias(&out, biases.down) }
        return out
    }

    public var residentBytes: Int { gate.byteCount + up.byteCount + down.byteCount + (biases?.byteCount ?? 0) }

    /// A few rows take the integer kernels on the calling thread (large products split on the pool).
    public var computesOnCallingThread: Bool { true }

    /// The f32 expert these codes stand for (with the same biases and activation).
    public func dequantized() -> FeedForward {
        FeedForward(gate: gate.dequantized(), up: up.dequantized(), down: down.dequantized(), biases: biases, gating: gating)
    }

    /// The three matrix records, gate, up, down, concatenated (the biases are separate
    /// tensors of the store record, `ExpertVariants.record(_:quantized:)`).
    public func encoded() -> [UInt8] { gate.encoded() + up.encoded() + down.encoded() }

    public init(decoding bytes: some Collection<UInt8>) throws(QuantizationError) {
        let array = Array(bytes)
        let (gate, afterGate) = try QuantizedMatrix.decode(array, at: 0)
        let (up, afterUp) = try QuantizedMatrix.decode(array, at: afterGate)
        let (down, end) = try QuantizedMatrix.decode(array, at: afterUp)
        guard end == array.count else { throw .malformedEncoding("\(array.count - end) trailing bytes after the expert") }
        try self.init(gate: gate, up: up, down: down)
    }
}
