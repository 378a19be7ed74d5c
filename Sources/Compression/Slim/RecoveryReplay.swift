import ExpertStore
import MoE
import Routing

/// Calibration text run through the model one layer at a time from the store, either as the
/// model is (`StreamedReplay`, the budget search) or *as it is being compressed*: then the
/// inputs a layer's recovery is fitted on are the hidden states the already-compressed
/// earlier layers produce, so each refit also corrects what the layers before it changed.
/// Memory holds one layer's weights and every sequence's hidden state (spilled to disk past
/// a budget).
struct RecoveryReplay {
    private let store: ExpertStore
    private let runner: LayerwiseRunner
    private let spool: HiddenStateSpool
    private let sequenceCount: Int
    private(set) var nextLayer = 0

    init(store: ExpertStore, calibration: [[Int]], precision: WeightPrecision, hiddenStateBudget: Int = 256 << 20) throws {
        self.store = store
        runner = LayerwiseRunner(description: try store.modelDescription(), tensors: try StoreTensorProvider(store: store), precision: precision)
        spool = try HiddenStateSpool(memoryBudget: hiddenStateBudget)
        for (i, hidden) in try runner.embed(calibration).enumerated() { try spool.store(hidden, for: i) }
        sequenceCount = calibration.count
    }

    /// Layer `l` watched twice on the current hidden states: unmodified (every original
    /// expert, the target), and with the plan's routing and `slots` (how it routes now).
    /// Neither run moves the hidden states on; `advance` does.
    func samples(layer l: Int, plan: LayerPlan, slots: [any Expert]) throws -> (full: LayerSamples, compressed: LayerSamples) {
        (try unmodifiedSamples(layer: l), try samples(layer: l, expertMap: plan.expertMap, slots: slots))
    }

    /// Layer `l`'s imported experts, as the replay runs them.
    func originals(layer l: Int) throws -> StoreExpertSource {
        try StoreExpertSource.layer(l, of: store, precision: runner.precision)
    }

    /// Layer `l` as the model has it, watched on the current hidden states (`originals`: the
    /// layer's experts when the caller has them loaded already).
    func unmodifiedSamples(layer l: Int, originals: StoreExpertSource? = nil) throws -> LayerSamples {
        try watch(layer: l, weights: runner.layer(l), experts: originals ?? self.originals(layer: l))
    }

    /// Layer `l` with `expertMap`'s routing and `slots`, watched on the current hidden states.
    func samples(layer l: Int, expertMap: ExpertMap, slots: [any Expert]) throws -> LayerSamples {
        try watch(layer: l, weights: runner.layer(l, expertMap: expertMap), experts: SlotExperts(layer: l, slots: slots))
    }

    private func watch(layer l: Int, weights: LayerwiseRunner.Layer, experts: some ExpertSource) throws -> LayerSamples {
        precondition(l == nextLayer, "layers are replayed in increasing order")
        let samples = LayerSamples(layer: l, hiddenSize: runner.description.hiddenSize)
        for i in 0..<sequenceCount {
            var hidden = try spool.load(i)
            try weights.run(&hidden, experts: experts, observer: samples)
        }
        return samples
    }

    /// Moves every sequence through layer `l`: with the plan's routing and `slots` for an MoE
    /// layer of the plan, as the model has it otherwise (with `originals` if already loaded);
    /// `observer` watches the run.
    mutating func advance(layer l: Int, plan: LayerPlan?, slots: [any Expert], originals: StoreExpertSource? = nil,
                          observer: (any RoutingObserver)? = nil) throws {
        precondition(l == nextLayer, "layers are replayed in increasing order")
        let weights = try runner.layer(l, expertMap: plan?.expertMap)
        let experts: any ExpertSource = plan == nil
            ? try originals ?? self.originals(layer: l)
            : SlotExperts(layer: l, slots: slots)
        for i in 0..<sequenceCount {
            var hidden = try spool.load(i)
            try weights.run(&hidden, experts: experts, observer: observer)
            try spool.store(hidden, for: i)
        }
        nextLayer += 1
    }
}

/// One layer's computation slots held in memory, as the forward pass asks for them.
struct SlotExperts: ExpertSource {
    let layer: Int
    let slots: [any Expert]

    func expert(layer: Int, index: Int) throws -> any Expert {
        guard layer == self.layer, slots.indices.contains(index) else { throw ModelError.noSuchExpert(layer: layer, expert: index) }
        return slots[index]
    }
}
