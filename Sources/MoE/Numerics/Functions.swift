import Foundation

/// The pointwise and row-wise functions of transformer blocks.
public enum Functions {
    @inlinable public static func silu(_ x: Float) -> Float { x / (1 + Foundation.exp(-x)) }

    @inlinable public static func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }

    /// RMSNorm over each row of `columns` elements in place: `x · rsqrt(mean(x²) + ε) · weight`.
    /// `rowLength` lets the same weight normalise several heads packed in one row.
    public static func rmsNorm(_ x: inout Matrix, weight: [Float], epsilon: Float) {
        let n = weight.count
        precondition(x.columns % n == 0, "rmsNorm: row of \(x.columns) is not a multiple of the norm size \(n)")
        x.values.withUnsafeMutableBufferPointer { v in
            var start = 0
            while start < v.count {
                var sum: Float = 0
                for i in 0..<n { sum += v[start + i] * v[start + i] }
                let scale = 1 / (sum / Float(n) + epsilon).squareRoot()
                for i in 0..<n { v[start + i] = weight[i] * (v[start + i] * scale) }
                start += n
            }
        }
    }

    /// Numerically stable softmax of a slice, in place.
    public static func softmax(_ v: UnsafeMutableBufferPointer<Float>) { softmax(v, sink: -.infinity) }

    /// Softmax with one more logit, `sink`, in the denominator only (gpt-oss's attention
    /// sinks): the probabilities of `v` then sum to less than one. A sink of -∞ adds nothing.
    public static func softmax(_ v: UnsafeMutableBufferPointer<Float>, sink: Float) {
        let maxValue = max(v.max() ?? sink, sink)
        var sum = Foundation.exp(sink - maxValue)
        for i in 0..<v.count {
            let e = Foundation.exp(v[i] - maxValue)
            v[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<v.count { v[i] *= inverse }
    }

    /// gpt-oss's clamped SwiGLU, written into `gate`: the gate clamped to at most `limit`, the
    /// up projection to `[-limit, limit]`, then `(up + 1) · gate · sigmoid(alpha · gate)`.
    public static func clampedSwiGLU(gate: inout Matrix, up: Matrix, alpha: Float, limit: Float) {
        precondition(gate.count == up.count)
        gate.values.withUnsafeMutableBufferPointer { g in
            up.values.withUnsafeBufferPointer { u in
                for i in 0..<g.count {
                    let clampedGate = min(g[i], limit)
                    let clampedUp = min(max(u[i], -limit), limit)
                    g[i] = (clampedUp + 1) * clampedGate * sigmoid(alpha * clampedGate)
                }
            }
        }
    }

    /// SwiGLU combine: `silu(gate) * up`, written into `gate`.
    public static func swiglu(gate: inout Matrix, up: Matrix) {
        precondition(gate.count == up.count)
        gate.values.withUnsafeMutableBufferPointer { g in
            up.values.withUnsafeBufferPointer { u in
                for i in 0..<g.count { g[i] = silu(g[i]) * u[i] }
            }
        }
    }
}
