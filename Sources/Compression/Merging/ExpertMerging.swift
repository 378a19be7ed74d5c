import MoE

public enum MergingError: Error, Sendable, Equatable, CustomStringConvertible {
    case noExperts
    case weightCount(experts: Int, weights: Int)
    case invalidWeight(index: Int, value: Double)
    case shapeMismatch(index: Int)
    case anchorOutOfRange(Int)
    case functionMismatch

    public var description: String {
        switch self {
        case .noExperts: "merging: no experts to merge"
        case .weightCount(let experts, let weights): "merging: \(weights) weights for \(experts) experts"
        case .invalidWeight(let index, let value): "merging: weight \(index) is \(value); weights must be finite and non-negative"
        case .shapeMismatch(let index): "merging: expert \(index) has a different shape from expert 0"
        case .anchorOutOfRange(let anchor): "merging: anchor \(anchor) is not one of the experts"
        case .functionMismatch: "merging: the experts differ in their biases or activation"
        }
    }
}

/// Merging SwiGLU experts into one by weighted averaging of their weights (HC-SMoE, M-SMoE),
/// and of their biases where they have them (gpt-oss), with the same weights.
public enum ExpertMerging {
    /// Weights scaled to sum to 1. All-zero weights (for example a cluster of experts that were
    /// never selected in calibration) give the plain mean, since nothing favours any member.
    public static func normalizedWeights(_ weights: [Double]) throws(MergingError) -> [Double] {
        for (i, w) in weights.enumerated() where !w.isFinite || w < 0 { throw .invalidWeight(index: i, value: w) }
        let total = weights.reduce(0, +)
        guard total > 0 else { return weights.map { _ in 1 / Double(weights.count) } }
        return weights.map { $0 / total }
    }

    /// `Σᵢ wᵢ·Eᵢ` projection by projection, with `w` normalised (frequency-weighted merging).
    public static func weightedAverage(_ experts: [FeedForward], weights: [Double]) throws(MergingError) -> FeedForward {
        guard let first = experts.first else { throw .noExperts }
        guard weights.count == experts.count else { throw .weightCount(experts: experts.count, weights: weights.count) }
        for (i, e) in experts.enumerated()
        where e.gate.rows != first.gate.rows || e.gate.columns != first.gate.columns {
            throw .shapeMismatch(index: i)
        }
        let w = try normalizedWeights(weights)
        guard experts.allSatisfy({ ($0.biases == nil) == (first.biases == nil) && $0.gating == first.gating }) else {
            throw .functionMismatch
        }
        func average(_ values: (FeedForward) -> [Float]) -> [Float] {
            var sum = [Double](repeating: 0, count: values(first).count)   // Double: exact enough that equal members average back to themselves
            for (expert, weight) in zip(experts, w) {
                let v = values(expert)
                for k in sum.indices { sum[k] += weight * Double(v[k]) }
            }
            return sum.map(Float.init)
        }
        func average(_ projection: KeyPath<FeedForward, Matrix>) -> Matrix {
            Matrix(rows: first[keyPath: projection].rows, columns: first[keyPath: projection].columns,
                   values: average { $0[keyPath: projection].values })
        }
        // Biases are averaged with the same weights as the weights they follow.
        let biases = first.biases.map { _ in
            ExpertBiases(gate: average { $0.biases!.gate }, up: average { $0.biases!.up }, down: average { $0.biases!.down })
        }
        return FeedForward(gate: average(\.gate), up: average(\.up), down: average(\.down), biases: biases, gating: first.gating)
    }

    /// M-SMoE merging: every member's neurons are first aligned to the anchor's (usually the
    /// dominant, most frequently selected expert), then the experts are averaged.
    public static func alignedAverage(_ experts: [FeedForward], weights: [Double], anchor: Int) throws(MergingError) -> FeedForward {
        guard experts.indices.contains(anchor) else { throw .anchorOutOfRange(anchor) }
        for (i, e) in experts.enumerated()
        where e.gate.rows != experts[anchor].gate.rows || e.gate.columns != experts[anchor].gate.columns {
            throw .shapeMismatch(index: i)
        }
        let aligned = experts.enumerated().map { i, e in i == anchor ? e : NeuronAlignment.aligned(e, to: experts[anchor]) }
        return try weightedAverage(aligned, weights: weights)
    }
}
