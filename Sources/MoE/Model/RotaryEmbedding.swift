import Foundation

/// Rotary position embedding as the checkpoint's config describes it (default, linear or YaRN).
public struct RotaryEmbedding: Sendable {
    public let description: RoPEDescription
    /// One inverse frequency per rotated pair.
    public let inverseFrequencies: [Float]
    /// YaRN multiplies cos and sin by this; 1 otherwise.
    public let attentionFactor: Float

    public init(_ description: RoPEDescription) {
        self.description = description
        let dim = description.dimensions
        let base = description.theta
        let exponents = stride(from: 0, to: dim, by: 2).map { Float(Double($0) / Double(dim)) }
        let plain = exponents.map { Float(1 / pow(base, Double($0))) }
        switch description.kind {
        case "linear":
            let factor = Float(description.factor ?? 1)
            inverseFrequencies = plain.map { $0 / factor }
            attentionFactor = 1
        case "yarn":
            (inverseFrequencies, attentionFactor) = Self.yarn(description, plain: plain)
        default:
            inverseFrequencies = plain
            attentionFactor = 1
        }
    }

    /// YaRN: blend interpolated and extrapolated frequencies with a linear ramp over the pairs.
    private static func yarn(_ d: RoPEDescription, plain: [Float]) -> ([Float], Float) {
        let dim = Double(d.dimensions)
        let factor = d.factor ?? 1
        let original = Double(d.originalMaxPositionEmbeddings ?? 4096)
        func mscale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }
        let attention: Double
        if let given = d.attentionFactor {
            attention = given
        } else if let m = d.mscale, let all = d.mscaleAllDim, m != 0, all != 0 {
            attention = mscale(factor, m) / mscale(factor, all)
        } else {
            attention = mscale(factor)
        }
        func correctionDim(_ rotations: Double) -> Double {
            dim * log(original / (rotations * 2 * Double.pi)) / (2 * log(d.theta))
        }
        var low = correctionDim(d.betaFast ?? 32)
        var high = correctionDim(d.betaSlow ?? 1)
        if d.truncate ?? true { low = floor(low); high = ceil(high) }
        low = max(low, 0)
        high = min(high, dim - 1)
        if low == high { high += 0.001 }
        let frequencies = plain.enumerated().map { i, extrapolated -> Float in
            let ramp = Float(min(max((Double(i) - low) / (high - low), 0), 1))
            let extrapolationWeight = 1 - ramp
            let interpolated = extrapolated / Float(factor)
            return interpolated * (1 - extrapolationWeight) + extrapolated * extrapolationWeight
        }
        return (frequencies, Float(attention))
    }

    /// Rotates each head of `x` (rows = tokens, each row `heads × headDim`) in place;
    /// row `t` is at absolute position `startPosition + t`. Only the `dimensions` rotated
    /// dimensions starting at `offset` inside each head are touched.
    public func apply(_ x: inout Matrix, heads: Int, headDim: Int, offset: Int = 0, startPosition: Int) {
        let half = description.dimensions / 2
        var cosines = [Float](repeating: 0, count: half)
        var sines = [Float](repeating: 0, count: half)
        var scratch = [Float](repeating: 0, count: description.dimensions)
        for t in 0..<x.rows {
            let position = Float(startPosition + t)
            for i in 0..<half {
                let angle = position * inverseFrequencies[i]
                cosines[i] = Float(cos(Double(angle))) * attentionFactor
                sines[i] = Float(sin(Double(angle))) * attentionFactor
            }
            for h in 0..<heads {
                let base = t * x.columns + h * headDim + offset
                for i in 0..<description.dimensions { scratch[i] = x.values[base + i] }
                for i in 0..<half {
                    // Interleaved pairs (x0,x1),(x2,x3)… come out de-interleaved, as in transformers;
                    // q and k get the same layout, so q·k is unchanged.
                    let (a, b) = description.interleaved ? (scratch[2 * i], scratch[2 * i + 1]) : (scratch[i], scratch[i + half])
                    x.values[base + i] = a * cosines[i] - b * sines[i]
                    x.values[base + i + half] = b * cosines[i] + a * sines[i]
                }
            }
        }
    }
}
