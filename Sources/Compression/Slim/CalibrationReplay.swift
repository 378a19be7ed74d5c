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
    private var replay: RecoveryReplay
    private let description: ModelDescription

    init(store: ExpertStore, calibration: [[Int]], precision: WeightPrecision, hiddenStateBudget: Int = 256 << 20) throws {
        replay = try RecoveryReplay(store: store, calibration: calibration, precision: precision, hiddenStateBudget: hiddenStateBudget)
        description = try store.modelDescription()
    }

    mutating func inputs(layer: Int, progress: (String) -> Void) throws -> RoutedInputs {
        precondition(layer >= replay.nextLayer, "layers are replayed in increasing order")
        var routed = RoutedInputs(hiddenSize: description.hiddenSize)
        while replay.nextLayer <= layer {
            let l = replay.nextLayer
            routed = RoutedInputs(hiddenSize: description.hiddenSize)
            try replay.advance(layer: l, plan: nil, slots: [], observer: l == layer ? routed : nil)
            progress("calibration replay, layer \(l + 1)/\(description.layerCount)")
        }
        return routed
    }
}
