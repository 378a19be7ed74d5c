import CBLAS
import MoE

/// The GPTQ Hessian of a linear layer's inputs, `H = 2·Σₜ wₜ·xₜxₜᵀ` (`wₜ = 1` unless given),
/// accumulated batch by batch in Double. With this scale, `tr(ΔW·H·ΔWᵀ)` is the (weighted)
/// sum over tokens of the squared output change `2·‖ΔW·xₜ‖²`, so errors of different layers
/// stay comparable. Per-token weights let the down projection's Hessian use `g²` (METHODS.md §10).
public struct InputHessian: Sendable {
    public let dimension: Int
    /// Row-major `dimension × dimension`, symmetric.
    public private(set) var values: [Double]
    public private(set) var tokenCount: Int = 0

    public init(dimension: Int) {
        precondition(dimension > 0)
        self.dimension = dimension
        self.values = [Double](repeating: 0, count: dimension * dimension)
    }

    /// Adds the rows of `x` `[tokens, dimension]`, optionally weighted (weights ≥ 0).
    public mutating func add(_ x: Matrix, weights: [Float]? = nil) {
        precondition(x.columns == dimension, "Hessian of \(dimension) inputs given rows of \(x.columns)")
        guard x.rows > 0 else { return }
        var scaled = x.values.map(Double.init)
        if let weights {
            precondition(weights.count == x.rows && weights.allSatisfy { $0 >= 0 }, "one non-negative weight per token")
            for t in 0..<x.rows {
                let root = Double(weights[t]).squareRoot()
                for c in 0..<dimension { scaled[t * dimension + c] *= root }
            }
        }
        let n = Int32(dimension)
        scaled.withUnsafeBufferPointer { xp in
            values.withUnsafeMutableBufferPointer { hp in
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, Int32(x.rows),
                            2, xp.baseAddress, n, xp.baseAddress, n, 1, hp.baseAddress, n)
            }
        }
        tokenCount += x.rows
    }

    /// Adds another accumulator's tokens (e.g. from a second calibration shard).
    public mutating func merge(_ other: InputHessian) {
        precondition(other.dimension == dimension)
        for i in values.indices { values[i] += other.values[i] }
        tokenCount += other.tokenCount
    }
}
