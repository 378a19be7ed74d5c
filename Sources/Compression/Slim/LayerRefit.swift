import MoE
import Routing

/// The closed-form recovery of one pruned (or merged) MoE layer, METHODS §13.
///
/// On calibration tokens with inputs `x_t` (produced by the already-compressed earlier
/// layers), the target is the unmodified layer's routed output `Y_t = Σ_j g_{t,j} E_j(x_t)`
/// (all experts, the full router). The compressed layer computes
///
///     Ŷ_t = Σ_{s routed} g_{t,s} W_down,s a_s(x_t)  +  Σ_{n novice} ĝ_{t,n} v_n
///
/// with `a_s = silu(W_gate,s x) ⊙ (W_up,s x)` under the plan's routing and `ĝ_{t,n}` the gate
/// the full router gives novice `n`'s expert (zero when it would not have chosen it). Both
/// terms are linear in the unknowns, so the down projections (`refitsDown`) and the novice
/// vectors (`fitsNovices`) are solved jointly by ridge least squares (`BlockRidge`): features
/// `g_{t,s} a_s(x_t)` per routed slot and `ĝ_{t,n}` per novice, priors the current weights and
/// vectors, λ = α · mean diag(ZᵀZ). Whatever is not fitted is held fixed and subtracted from
/// the target. Gate and up projections, and the routing, are unchanged.
struct LayerRefit {
    var refitsDown: Bool
    var fitsNovices: Bool
    /// α of λ = α · mean diag(ZᵀZ); 0.01–0.1 recovers most of the loss on the default model.
    var ridge: Double

    struct Result {
        /// New down projections `[hidden, intermediate]` by routed slot.
        var downs: [Int: Matrix] = [:]
        /// New novice vectors by slot.
        var novices: [Int: [Float]] = [:]
    }

    /// - Parameters:
    ///   - weights: each routed slot's current weights, by slot.
    ///   - novices: each novice slot's current vector, by slot.
    func solve(full: LayerSamples, compressed: LayerSamples, map: ExpertMap,
               weights: [Int: FeedForward], novices: [Int: [Float]]) throws -> Result {
        let d = full.hiddenSize
        let tokens = full.tokenCount
        precondition(compressed.tokenCount == tokens, "both runs see the same tokens")
        var target = full.routedOutputs.map(Double.init)
        var blocks = [BlockRidge.Block]()
        var unknowns = [(slot: Int, isNovice: Bool)]()

        // Each slot's tokens and gates: routed slots under the plan's routing, novices under the full router's.
        var routedRows = [Int: [(token: Int, gate: Float)]]()
        var noviceRows = [Int: [(token: Int, gate: Float)]]()
        for t in 0..<tokens {
            for (slot, gate) in map.slots(for: compressed.decisions[t]) { routedRows[slot, default: []].append((t, gate)) }
            for (slot, gate) in map.noviceSlots(for: full.decisions[t]) { noviceRows[slot, default: []].append((t, gate)) }
        }
        for slot in weights.keys.sorted() {
            let expert = weights[slot]!
            let rows = routedRows[slot] ?? []
            let activation = expert.activation(compressed.inputs(rows: rows.map(\.token)))
            let f = expert.intermediateSize
            if refitsDown {
                var features = [Double](repeating: 0, count: rows.count * f)
                for (i, row) in rows.enumerated() {
                    for c in 0..<f { features[i * f + c] = Double(row.gate) * Double(activation.values[i * f + c]) }
                }
                blocks.append(BlockRidge.Block(rows: rows.map(\.token), features: features, width: f,
                                               prior: Self.transposed(expert.down)))
                unknowns.append((slot, false))
            } else {
                var output = LinearAlgebra.linear(activation, expert.down)
                if let biases = expert.biases { LinearAlgebra.addBias(&output, biases.down) }
                for (i, row) in rows.enumerated() {
                    for c in 0..<d { target[row.token * d + c] -= Double(row.gate) * Double(output.values[i * d + c]) }
                }
            }
        }
        for slot in novices.keys.sorted() {
            let vector = novices[slot]!
            let rows = noviceRows[slot] ?? []
            if fitsNovices {
                blocks.append(BlockRidge.Block(rows: rows.map(\.token), features: rows.map { Double($0.gate) }, width: 1,
                                               prior: vector.map(Double.init)))
                unknowns.append((slot, true))
            } else {
                for row in rows {
                    for c in 0..<d { target[row.token * d + c] -= Double(row.gate) * Double(vector[c]) }
                }
            }
        }
        var result = Result()
        guard !blocks.isEmpty else { return result }
        let solution = try BlockRidge(blocks: blocks, target: target, outputWidth: d).solve(alpha: ridge)
        for ((slot, isNovice), values) in zip(unknowns, solution) {
            if isNovice {
                result.novices[slot] = values.map(Float.init)
            } else {
                let f = values.count / d
                var down = [Float](repeating: 0, count: d * f)
                for i in 0..<f { for c in 0..<d { down[c * f + i] = Float(values[i * d + c]) } }
                result.downs[slot] = Matrix(rows: d, columns: f, values: down)
            }
        }
        return result
    }

    /// `mᵀ` in double, row-major.
    static func transposed(_ m: Matrix) -> [Double] {
        var out = [Double](repeating: 0, count: m.count)
        for r in 0..<m.rows { for c in 0..<m.columns { out[c * m.rows + r] = Double(m.values[r * m.columns + c]) } }
        return out
    }
}
