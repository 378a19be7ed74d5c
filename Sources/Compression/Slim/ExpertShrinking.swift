import MoE

/// Pruning inside experts (METHODS §15, CAMERA-P's micro-experts): neuron `i` of expert `j`
/// is row `i` of the gate and up projections and column `i` of the down projection, and it
/// adds `g_{t,j} a_{t,j,i} W_down,j[:, i]` to the block output for token `t`. Its score is
/// that contribution's energy over the calibration tokens routed to the expert,
///
///     s_{j,i} = ‖W_down,j[:, i]‖² · Σ_t g_{t,j}² a_{t,j,i}²,   a_{t,j} = silu(W_gate,j x_t) ⊙ (W_up,j x_t),
///
/// and the lowest-scoring neurons are removed, which narrows all three projections. A removed
/// neuron's output is simply gone (no compensation here; `--refit` refits the narrowed down
/// projections afterwards). Scores include the gates, so within a layer a rarely chosen
/// expert's neurons score low: with `.layer` scope such experts lose more neurons.
public enum ExpertShrinking {
    /// Which neurons compete for the kept share.
    public enum Scope: String, CaseIterable, Sendable, Codable {
        /// Every expert keeps the same share of its own neurons.
        case expert
        /// One threshold over all neurons of a layer's experts (CAMERA-P): widths vary by expert.
        case layer
    }

    /// The energy score of each of `weights`' neurons on the rows `x` routed to it with `gates`.
    public static func neuronEnergy(_ weights: FeedForward, x: Matrix, gates: [Float]) -> [Double] {
        let f = weights.intermediateSize
        var routedEnergy = [Double](repeating: 0, count: f)
        if x.rows > 0 {
            let activation = weights.activation(x)
            for t in 0..<x.rows {
                let g2 = Double(gates[t]) * Double(gates[t])
                for i in 0..<f {
                    let a = Double(activation.values[t * f + i])
                    routedEnergy[i] += g2 * a * a
                }
            }
        }
        let d = weights.down.rows
        var columnNorms = [Double](repeating: 0, count: f)
        for r in 0..<d {
            for i in 0..<f {
                let w = Double(weights.down.values[r * f + i])
                columnNorms[i] += w * w
            }
        }
        return zip(routedEnergy, columnNorms).map { $0 * $1 }
    }

    /// The neurons each expert keeps (ascending indices), given every expert's neuron scores.
    ///
    /// Kept widths are multiples of `granule` (quantization groups and 8-bit activation
    /// blocks need whole multiples), at least one granule, and never wider than the expert.
    /// Ties keep the lower index, so the choice is deterministic.
    public static func keptNeurons(scores: [[Double]], removing fraction: Double, scope: Scope, granule: Int) -> [[Int]] {
        precondition(fraction >= 0 && fraction < 1 && granule > 0)
        func roundedWidth(_ width: Double, of f: Int) -> Int {
            let units = max(1, Int((width / Double(granule)).rounded()))
            return min(f, units * granule)
        }
        let widths: [Int]
        switch scope {
        case .expert:
            widths = scores.map { roundedWidth(Double($0.count) * (1 - fraction), of: $0.count) }
        case .layer:
            // The layer's kept count, then each expert's share of the neurons above the threshold.
            let all = scores.enumerated().flatMap { j, s in s.enumerated().map { (j, $0.offset, $0.element) } }
                .sorted { ($0.2, -$0.0, -$0.1) > ($1.2, -$1.0, -$1.1) }
            let keep = Int((Double(all.count) * (1 - fraction)).rounded())
            var counts = [Int](repeating: 0, count: scores.count)
            for entry in all.prefix(keep) { counts[entry.0] += 1 }
            widths = zip(counts, scores).map { count, s in roundedWidth(Double(count), of: s.count) }
        }
        return zip(scores, widths).map { s, width in
            s.indices.sorted { (s[$0], -$0) > (s[$1], -$1) }.prefix(width).sorted()
        }
    }

    /// The width unit kept widths are rounded to: when the plan quantizes experts, a whole
    /// quantization group that is also a whole 32-value block of 8-bit activations (the down
    /// projection's input); else 8 (one AVX2 register of f32) where the expert is a multiple of it.
    public static func granule(intermediateSize f: Int, quantizationGroup: Int?) -> Int {
        guard let group = quantizationGroup else { return f % 8 == 0 ? 8 : 1 }
        let block = f % 32 == 0 ? 32 : 1
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let both = group / gcd(group, block) * block
        return f % both == 0 ? both : group
    }
}

extension FeedForward {
    /// The same network with only `neurons` (indices into the intermediate dimension, in the
    /// order given): gate and up rows, down columns, and their gate and up biases.
    public func keepingNeurons(_ neurons: [Int]) -> FeedForward {
        let (d, f, k) = (gate.columns, intermediateSize, neurons.count)
        var g = [Float](), u = [Float]()
        g.reserveCapacity(k * d)
        u.reserveCapacity(k * d)
        for i in neurons {
            g += gate.values[(i * d)..<((i + 1) * d)]
            u += up.values[(i * d)..<((i + 1) * d)]
        }
        var dn = [Float](repeating: 0, count: down.rows * k)
        for r in 0..<down.rows {
            for (c, i) in neurons.enumerated() { dn[r * k + c] = down.values[r * f + i] }
        }
        let kept = biases.map { b in ExpertBiases(gate: neurons.map { b.gate[$0] }, up: neurons.map { b.up[$0] }, down: b.down) }
        return FeedForward(gate: Matrix(rows: k, columns: d, values: g), up: Matrix(rows: k, columns: d, values: u),
                           down: Matrix(rows: down.rows, columns: k, values: dn), biases: kept, gating: gating)
    }

    /// The same network padded with zero neurons to `width`: a zero gate and up row (and zero
    /// biases) give `silu(0) · 0 = 0`, and gpt-oss's clamped `(up + 1) · 0 · σ(0) = 0`, so the
    /// output is unchanged (exports that need one width per layer).
    public func paddedWithZeroNeurons(to width: Int) -> FeedForward {
        let (d, f) = (gate.columns, intermediateSize)
        precondition(width >= f)
        guard width > f else { return self }
        let extra = [Float](repeating: 0, count: (width - f) * d)
        var dn = [Float](repeating: 0, count: down.rows * width)
        for r in 0..<down.rows {
            for c in 0..<f { dn[r * width + c] = down.values[r * f + c] }
        }
        let zeros = [Float](repeating: 0, count: width - f)
        let padded = biases.map { ExpertBiases(gate: $0.gate + zeros, up: $0.up + zeros, down: $0.down) }
        return FeedForward(gate: Matrix(rows: width, columns: d, values: gate.values + extra),
                           up: Matrix(rows: width, columns: d, values: up.values + extra),
                           down: Matrix(rows: down.rows, columns: width, values: dn), biases: padded, gating: gating)
    }
}
