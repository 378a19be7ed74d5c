import MoE

/// A quantized matrix is a linear weight like any other, so a plan can quantize dense tensors
/// (attention, shared experts, the output head) and the forward pass reads them packed.
extension QuantizedMatrix: LinearWeight {
    public func gatherRows(_ indices: [Int]) -> Matrix {
        var out = Matrix(zeros: indices.count, columns)
        for (i, r) in indices.enumerated() {
            out.values.replaceSubrange((i * columns)..<((i + 1) * columns), with: dequantizedRows(r..<(r + 1)).values)
        }
        return out
    }
}
