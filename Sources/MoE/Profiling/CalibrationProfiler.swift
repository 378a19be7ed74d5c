import Foundation
import Routing

/// Runs calibration sequences through a model with a `ProfileAccumulator` attached and
/// returns the routing profile. Two modes give identical profiles:
/// - in memory: the whole model is loaded, sequences run one after the other;
/// - streaming: one layer at a time over all sequences, holding only that layer's weights
///   and the hidden states of all sequences (spilled to disk past a budget).
public struct CalibrationProfiler {
    public struct Progress: Sendable {
        public var stage: String
        public var done: Int
        public var total: Int
        public var tokens: Int
    }

    public var fingerprint: String
    public var source: String
    public var denseSampleStride: Int = 16

    public init(fingerprint: String, source: String) {
        self.fingerprint = fingerprint
        self.source = source
    }

    func accumulator(for description: ModelDescription) -> ProfileAccumulator {
        ProfileAccumulator(
            modelFingerprint: fingerprint, source: source,
            moeLayers: description.layers.map { $0.moe.map { (experts: $0.expertCount, hidden: description.hiddenSize, topK: $0.topK) } },
            denseSampleStride: denseSampleStride)
    }

    /// Profiles with the whole model in memory.
    public func profile(model: MoEModel, sequences: [[Int]], progress: (Progress) -> Void = { _ in }) throws -> RoutingProfile {
        let profiler = accumulator(for: model.description)
        var tokens = 0
        for (i, ids) in sequences.enumerated() {
            profiler.countSequence()
            _ = try model.logits(ids, observer: profiler)
            tokens += ids.count
            progress(Progress(stage: "profiling", done: i + 1, total: sequences.count, tokens: tokens))
        }
        return profiler.profile
    }

    /// Profiles layer by layer. `expertsForLayer` gives an expert source that holds (at most)
    /// that layer's experts; it is released before the next layer is loaded.
    public func profileStreaming(runner: LayerwiseRunner, sequences: [[Int]], hiddenStateBudget: Int,
                                 expertsForLayer: (Int) throws -> any ExpertSource,
                                 progress: (Progress) -> Void = { _ in }) throws -> RoutingProfile {
        let description = runner.description
        let profiler = accumulator(for: description)
        let spool = try HiddenStateSpool(memoryBudget: hiddenStateBudget)
        for (i, embedded) in try runner.embed(sequences).enumerated() {
            profiler.countSequence()
            try spool.store(embedded, for: i)
        }
        let totalTokens = sequences.reduce(0) { $0 + $1.count }
        for l in 0..<description.layerCount {
            let layer = try runner.layer(l)
            let experts = try expertsForLayer(l)
            for i in sequences.indices {
                var hidden = try spool.load(i)
                try layer.run(&hidden, experts: experts, observer: profiler)
                try spool.store(hidden, for: i)
            }
            progress(Progress(stage: "layer \(l + 1)/\(description.layerCount)", done: l + 1, total: description.layerCount, tokens: totalTokens))
        }
        return profiler.profile
    }
}
