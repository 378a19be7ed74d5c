import ExpertStore
import MoE

/// The tokens each expert of one MoE layer receives in the full model on calibration text:
/// what quantization error measurement and GPTQ work on. Asked for layer after layer, in
/// increasing order.
protocol CalibrationReplay {
    mutating func inputs(layer: Int, progress: (String) -> Void) throws -> RoutedInputs
}

/// The whole model in memory: one forward pass per sequence watches every layer at once.
struct InMemoryReplay: CalibrationReplay {
    private let routed: RoutedInputs

    init(model: MoEModel, calibration: [[Int]], progress: (String) -> Void) throws {
        routed = RoutedInputs(hiddenSize: model.description.hiddenSize)
        for (i, ids) in calibration.enumerated() {
            _ = try model.logits(ids, observer: routed)
            progress("calibration replay \(i + 1)/\(calibration.count)")
        }
    }

    func inputs(layer: Int, progress: (String) -> Void) -> RoutedInputs { routed }
}

/// Layer by layer from the store: every sequence's hidden state is kept (spilled to disk past a
/// budget) and moved one layer on when that layer is asked for, so memory holds one layer's
/// weights and one layer's routed inputs. Each sequence runs through a layer on its own with
/// the kernels of a model in memory, so the inputs equal `InMemoryReplay`'s bit for bit.
struct StreamedReplay: CalibrationReplay {
    private let store: ExpertStore
    private let runner: LayerwiseRunner
    private let spool: HiddenStateSpool
    private let sequenceCount: Int
    private var nextLayer = 0

    init(store: ExpertStore, calibration: [[Int]], precision: WeightPrecision, hiddenStateBudget: Int = 256 << 20) throws {
        self.store = store
        runner = LayerwiseRunner(description: try store.modelDescription(), tensors: try StoreTensorProvider(store: store), precision: precision)
        spool = try HiddenStateSpool(memoryBudget: hiddenStateBudget)
        for (i, hidden) in try runner.embed(calibration).enumerated() { try spool.store(hidden, for: i) }
        sequenceCount = calibration.count
    }

    mutating func inputs(layer: Int, progress: (String) -> Void) throws -> RoutedInputs {
        precondition(layer >= nextLayer, "layers are replayed in increasing order")
        let description = runner.description
        var routed = RoutedInputs(hiddenSize: description.hiddenSize)
        while nextLayer <= layer {
            let l = nextLayer
            routed = RoutedInputs(hiddenSize: description.hiddenSize)
            let experts = try StoreExpertSource.layer(l, of: store, precision: runner.precision)
            let weights = try runner.layer(l)
            for i in 0..<sequenceCount {
                var hidden = try spool.load(i)
                try weights.run(&hidden, experts: experts, observer: l == layer ? routed : nil)
                try spool.store(hidden, for: i)
            }
            progress("calibration replay, layer \(l + 1)/\(description.layerCount)")
            nextLayer += 1
        }
        return routed
    }
}
