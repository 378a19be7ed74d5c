import MoE

/// Permutation alignment of SwiGLU experts' intermediate neurons (M-SMoE "weight matching").
///
/// Permuting an expert's intermediate neurons (rows of gate and up together with the matching
/// columns of down) does not change its function, so two experts trained apart may hold the
/// same neurons in different orders; averaging them neuron by neuron would then mix unrelated
/// neurons. Aligning first pairs each anchor neuron with the member neuron most like it.
public enum NeuronAlignment {
    /// Row `i`: neuron `i`'s weights, `[gate row i, up row i, down column i]` (`[f, 3·hidden]`).
    public static func neuronFeatures(_ expert: FeedForward) -> Matrix {
        let f = expert.intermediateSize, d = expert.gate.columns
        var values = [Float]()
        values.reserveCapacity(f * 3 * d)
        for i in 0..<f {
            values += expert.gate.values[(i * d)..<((i + 1) * d)]
            values += expert.up.values[(i * d)..<((i + 1) * d)]
            for c in 0..<d { values.append(expert.down[c, i]) }
        }
        return Matrix(rows: f, columns: 3 * d, values: values)
    }

    /// The permutation `π` of `member`'s neurons maximising `Σᵢ ⟨anchor neuron i, member neuron π(i)⟩`
    /// (equivalently minimising `Σᵢ ‖aᵢ − m_π(i)‖²`, since the norms do not depend on `π`):
    /// `permuted(member, by: π)` puts member neuron `π[i]` in position `i`.
    public static func permutation(aligning member: FeedForward, to anchor: FeedForward) -> [Int] {
        precondition(member.gate.rows == anchor.gate.rows && member.gate.columns == anchor.gate.columns,
                     "alignment needs experts of one shape")
        let f = anchor.intermediateSize
        let similarity = LinearAlgebra.linear(neuronFeatures(anchor), neuronFeatures(member))   // [f, f] = A·Mᵀ
        return LinearAssignment.maximumWeight(similarity.values.map(Double.init), rows: f, columns: f)
    }

    /// The same function with neurons reordered: new neuron `i` is old neuron `permutation[i]`.
    public static func permuted(_ expert: FeedForward, by permutation: [Int]) -> FeedForward {
        let f = expert.intermediateSize
        precondition(permutation.count == f && Set(permutation).count == f && permutation.allSatisfy { (0..<f).contains($0) },
                     "not a permutation of \(f) neurons")
        let down = expert.down
        var permutedDown = Matrix(zeros: down.rows, f)
        for r in 0..<down.rows { for i in 0..<f { permutedDown[r, i] = down[r, permutation[i]] } }
        // Gate and up biases belong to their neurons; the down bias is on the output, unmoved.
        let biases = expert.biases.map { b in
            ExpertBiases(gate: permutation.map { b.gate[$0] }, up: permutation.map { b.up[$0] }, down: b.down)
        }
        return FeedForward(gate: expert.gate.gatherRows(permutation), up: expert.up.gatherRows(permutation), down: permutedDown,
                           biases: biases, gating: expert.gating)
    }

    /// `member` with its neurons aligned to `anchor`.
    public static func aligned(_ member: FeedForward, to anchor: FeedForward) -> FeedForward {
        permuted(member, by: permutation(aligning: member, to: anchor))
    }
}
