import MoE
import Routing

/// One MoE layer watched on every calibration token (all sequences, concatenated): what the
/// block saw, how it routed, and what its routed experts added up to.
final class LayerSamples: RoutingObserver {
    let layer: Int
    let hiddenSize: Int
    /// Block inputs, `T × d`.
    private(set) var inputs: [Float] = []
    /// Gated sums of routed expert outputs (shared expert excluded), `T × d`.
    private(set) var routedOutputs: [Float] = []
    private(set) var decisions: [RoutingDecision] = []

    init(layer: Int, hiddenSize: Int) {
        self.layer = layer
        self.hiddenSize = hiddenSize
    }

    var tokenCount: Int { decisions.count }

    func observe(_ o: MoELayerObservation) throws {
        guard o.layer == layer else { return }
        inputs += o.blockInput
        routedOutputs += o.routedOutput
        decisions += o.decisions
    }

    /// The block inputs of `rows`, as a matrix.
    func inputs(rows: [Int]) -> Matrix {
        let d = hiddenSize
        var values = [Float]()
        values.reserveCapacity(rows.count * d)
        for r in rows { values += inputs[(r * d)..<((r + 1) * d)] }
        return Matrix(rows: rows.count, columns: d, values: values)
    }
}
