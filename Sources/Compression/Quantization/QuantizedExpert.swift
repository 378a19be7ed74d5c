import MoE

/// A SwiGLU expert whose three projections are quantized: `down(silu(gate·x) ⊙ up·x)`, each
/// product computed from packed codes.
public struct QuantizedExpert: Expert {
    public let gate: QuantizedMatrix   // [intermediate, hidden]
    public let up: QuantizedMatrix     // [intermediate, hidden]
    public let down: QuantizedMatrix   // [hidden, intermediate]

    public init(gate: QuantizedMatrix, up: QuantizedMatrix, down: QuantizedMatrix) throws(QuantizationError) {
        guard gate.rows == up.rows, gate.columns == up.columns else {
            throw .expertShapeMismatch("gate is \(gate.rows)x\(gate.columns) but up is \(up.rows)x\(up.columns)")
        }
        guard down.rows == gate.columns, down.columns == gate.rows else {
            throw .expertShapeMismatch("down is \(down.rows)x\(down.columns), expected \(gate.columns)x\(gate.rows)")
        }
        self.gate = gate
        self.up = up
        self.down = down
    }

    /// Round-to-nearest quantization of every projection in one format.
    public init(quantizing expert: FeedForward, format: QuantizationFormat) throws(QuantizationError) {
        try self.init(gate: QuantizedMatrix(quantizing: expert.gate, format: format),
                      up: QuantizedMatrix(quantizing: expert.up, format: format),
                      down: QuantizedMatrix(quantizing: expert.down, format: format))
    }

    public var intermediateSize: Int { gate.rows }
    public var hiddenSize: Int { gate.columns }

    public func forward(_ x: Matrix) -> Matrix {
        var activation: Matrix
        if gate.format == up.format && gate.takesIntegerKernel(inputRows: x.rows) {
            // Decode: gate and up read the same input, quantized to 8 bits once for both.
            let input = QuantizedActivations(x, bits: gate.bits)
            activation = gate.integerLinear(input)
            Functions.swiglu(gate: &activation, up: up.integerLinear(input))
        } else {
            activation = gate.linear(x)
            Functions.swiglu(gate: &activation, up: up.linear(x))
        }
        return down.linear(activation)
    }

    public var residentBytes: Int { gate.byteCount + up.byteCount + down.byteCount }

    /// A few rows take the integer kernels on the calling thread (large products split on the pool).
    public var computesOnCallingThread: Bool { true }

    /// The f32 expert these codes stand for.
    public func dequantized() -> FeedForward {
        FeedForward(gate: gate.dequantized(), up: up.dequantized(), down: down.dequantized())
    }

    /// The three matrix records, gate, up, down, concatenated.
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
