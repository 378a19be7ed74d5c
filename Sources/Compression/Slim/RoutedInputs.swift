import MoE
import Routing

/// The calibration tokens each expert receives, with the gates applied to them, collected by
/// watching a forward pass: what quantization error measurement and GPTQ replay on.
public final class RoutedInputs: RoutingObserver {
    public struct Batch {
        /// Routed block inputs, `n × hidden`.
        public var inputs: [Float] = []
        public var gates: [Float] = []
        /// Each row's token, numbered over all the layer's observed runs.
        public var tokens: [Int] = []
        public var count: Int { gates.count }
    }

    public private(set) var layers: [Int: [Batch]] = [:]
    /// Tokens observed per layer so far.
    public private(set) var tokenCounts: [Int: Int] = [:]
    public let hiddenSize: Int
    /// Stop collecting an expert's rows past this many (bounds memory on long calibration sets).
    public let maximumRowsPerExpert: Int

    public init(hiddenSize: Int, maximumRowsPerExpert: Int = 4096) {
        self.hiddenSize = hiddenSize
        self.maximumRowsPerExpert = maximumRowsPerExpert
    }

    public func observe(_ o: MoELayerObservation) throws {
        var batches = layers[o.layer] ?? Array(repeating: Batch(), count: o.expertCount)
        let d = o.hiddenSize
        let first = tokenCounts[o.layer] ?? 0
        for (t, decision) in o.decisions.enumerated() {
            for (e, g) in zip(decision.experts, decision.gates) where batches[e].count < maximumRowsPerExpert {
                batches[e].inputs.append(contentsOf: o.blockInput[(t * d)..<((t + 1) * d)])
                batches[e].gates.append(g)
                batches[e].tokens.append(first + t)
            }
        }
        layers[o.layer] = batches
        tokenCounts[o.layer] = first + o.tokenCount
    }

    /// Rows routed to any of `experts` in `layer`, as a matrix, their gates and their tokens.
    public func rows(layer: Int, experts: [Int]) -> (x: Matrix, gates: [Float], tokens: [Int]) {
        var inputs = [Float](), gates = [Float](), tokens = [Int]()
        for e in experts {
            guard let batch = layers[layer]?[e] else { continue }
            inputs += batch.inputs
            gates += batch.gates
            tokens += batch.tokens
        }
        return (Matrix(rows: gates.count, columns: hiddenSize, values: inputs), gates, tokens)
    }
}
