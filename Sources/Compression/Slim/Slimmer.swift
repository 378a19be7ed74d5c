import CKernels
import ExpertStore
import Foundation
import MoE
import Routing

/// What a slim produced: the plan and the new expert records it needs.
public struct SlimResult: Sendable {
    public var plan: CompressionPlan
    public var records: [ExpertRecord]
    /// Bytes of the unmodified model's experts, for comparison with `plan.expectedExpertBytes`.
    public var originalExpertBytes: Int
    /// How many slots got each bit width (empty without quantization).
    public var bitHistogram: [Int: Int]
    public var noviceCount: Int
    public var mergedGroupCount: Int
    /// Quantized dense tensors to write with the plan (empty when streaming wrote them already).
    public var denseVariants: [(name: String, variant: String, bytes: [UInt8])] = []
}

/// Builds a plan from a routing profile: pruning (with novices) or merging, then optionally
/// mixed-precision quantization with errors measured on calibration tokens.
public struct Slimmer {
    public let store: ExpertStore
    public let description: ModelDescription
    public let fingerprint: String

    public init(store: ExpertStore) throws {
        self.store = store
        description = try store.modelDescription()
        fingerprint = try store.fingerprint() ?? ""
    }

    /// gpt-oss's experts carry biases: merged and quantized variants keep them (`ExpertBiases`),
    /// but the ridge refit solves for down projections without an intercept, so it cannot
    /// fit the down biases a refit of such an expert needs, and is refused rather than built wrong.
    private func refuseMethodsBiasedExpertsLack(_ options: SlimOptions) throws {
        guard options.refit, let l = description.moeLayerIndices.first(where: { description.layers[$0].moe!.expertFunction.hasBias }) else { return }
        throw PlanError.invalid(plan: options.name, reason: "refit (--refit) is not implemented for \(description.family.rawValue) experts (layer \(l) and on have biases on every projection, and the ridge refit of down projections has no intercept to fit the down biases with); prune, merge or quantize without --refit")
    }

    public func slim(profile: RoutingProfile, profileName: String, options: SlimOptions, calibration: [[Int]] = [],
                     progress: (String) -> Void = { _ in }) throws -> SlimResult {
        guard profile.modelFingerprint == fingerprint else {
            throw PlanError.wrongModel(plan: options.name, planFingerprint: profile.modelFingerprint, storeFingerprint: fingerprint)
        }
        guard options.keepFraction > 0 && options.keepFraction <= 1 else {
            throw PlanError.invalid(plan: options.name, reason: "--keep must be in (0, 1], got \(options.keepFraction)")
        }
        try refuseMethodsBiasedExpertsLack(options)
        let criteria = profile.criteria()
        let protected = options.pruneSuperExperts ? [] : profile.superExperts()
        var recipe = PlanRecipe(method: [options.prune.map { "prune:\($0.rawValue)" }, options.merge.map { "merge:\($0.rawValue)" },
                                         options.shrink.map { "shrink:\($0)" }, options.refit ? "refit" : nil,
                                         options.averageBits.map { "bits:\($0)" } ?? options.uniformBits.map { "uniform-bits:\($0)" }]
            .compactMap { $0 }.joined(separator: "+"))
        recipe.profiles = [profileName]
        recipe.criterion = options.prune?.rawValue
        recipe.keepFraction = options.keepFraction
        recipe.budget = options.budget.rawValue
        recipe.noviceFraction = options.noviceFraction
        recipe.averageBits = options.averageBits ?? options.uniformBits.map(Double.init)
        recipe.groupSize = options.groupSize
        recipe.protectedSuperExperts = protected.sorted()

        // 1. Structure: which experts stay routable and what each slot is.
        var layers = [LayerPlan?](repeating: nil, count: description.layerCount)
        var records = [ExpertRecord]()
        var derived = [Int: [Int: FeedForward]]()          // layer → slot → merged or refit weights
        var noviceVectors = [Int: [Int: [Float]]]()        // layer → expert → novice vector
        var noviceCount = 0, mergedGroups = 0
        let kept: [Int: [Int]]? = try options.prune.map { criterion in
            let scores = criteria.map { $0.map(criterion.value) }
            guard options.budget == .search else {
                return try ExpertSelection.keep(scores: scores, keepFraction: options.keepFraction, budget: options.budget,
                                                minimumPerLayer: try minimumTopK(options), protected: protected,
                                                groups: Self.limitingGroups(description))
            }
            let search = try BudgetSearch(store: store, calibration: calibration, precision: options.replayPrecision)
                .search(scores: scores, keepFraction: options.keepFraction, minimumPerLayer: try minimumTopK(options),
                        protected: protected, progress: progress)
            recipe.searchedCounts = search.counts
            return search.kept
        }
        for l in description.moeLayerIndices {
            let moe = description.layers[l].moe!
            let stats = criteria[l]
            if let kept, let criterion = options.prune {
                let survivors = kept[l] ?? []
                let pruned = (0..<moe.expertCount).filter { !survivors.contains($0) }
                    .sorted { criterion.value(stats[$0]) > criterion.value(stats[$1]) }
                let novices = Array(pruned.prefix(Int((Double(moe.expertCount) * options.noviceFraction).rounded())))
                var slotOf = [Int?](repeating: nil, count: moe.expertCount)
                var noviceSlotOf = [Int?](repeating: nil, count: moe.expertCount)
                var slots = [SlotPlan]()
                for e in survivors { slotOf[e] = slots.count; slots.append(.expert(e, variant: 0)) }
                // Novices come after the routed slots and outside the top-k (additive).
                for e in novices.sorted() {
                    noviceSlotOf[e] = slots.count
                    slots.append(.novice(e, variant: ExpertVariants.novice(plan: options.name)))
                    noviceVectors[l, default: [:]][e] = profile.layers[l]!.routedOutputMean(e).map { Float($0) }
                    noviceCount += 1
                }
                layers[l] = LayerPlan(expertMap: ExpertMap(slotOfExpert: slotOf, noviceSlotOfExpert: novices.isEmpty ? nil : noviceSlotOf),
                                      slots: slots)
            } else if let method = options.merge {
                progress("merging layer \(l)")
                let groups = try mergeGroups(layer: l, profile: profile, method: method, keepFraction: options.keepFraction,
                                             topK: moe.topK, protected: protected)
                var slotOf = [Int?](repeating: nil, count: moe.expertCount)
                var slots = [SlotPlan]()
                for group in groups {
                    for e in group { slotOf[e] = slots.count }
                    if group.count == 1 {
                        slots.append(.expert(group[0], variant: 0))
                        continue
                    }
                    let frequencies = group.map { stats[$0].frequency }
                    let total = frequencies.reduce(0, +)
                    let weights = total > 0 ? frequencies.map { $0 / total } : group.map { _ in 1 / Double(group.count) }
                    let experts = try group.map { try originalExpert(layer: l, expert: $0) }
                    let average = method == .mSMoE
                        ? try ExpertMerging.alignedAverage(experts, weights: weights, anchor: 0)
                        : try ExpertMerging.weightedAverage(experts, weights: weights)
                    let variant = ExpertVariants.merged(plan: options.name)
                    derived[l, default: [:]][slots.count] = average
                    slots.append(.merged(members: group, weights: weights, variant: variant))
                    mergedGroups += 1
                }
                layers[l] = LayerPlan(expertMap: ExpertMap(slotOfExpert: slotOf), slots: slots)
            } else {
                layers[l] = LayerPlan(expertMap: .identity(expertCount: moe.expertCount),
                                      slots: (0..<moe.expertCount).map { .expert($0, variant: 0) })
            }
        }

        // 1a. Routing rules: a top-k other than the family's and token-by-token skipping,
        // over the experts that remain (the refit below fits under them).
        if options.topK != nil || options.skip != nil {
            try applyRoutingRules(&layers, options: options, profile: profile)
            recipe.topK = options.topK
            recipe.skip = options.skip?.description
        }

        // 1b. Pruning inside experts: the lowest-energy neurons of every routed slot removed.
        var narrowing = [Int: [Int: [Int]]]()              // layer → slot → kept neurons
        let quantizes = options.averageBits != nil || options.uniformBits != nil
        if let fraction = options.shrink {
            let shrunk = try shrink(layers: &layers, derived: &derived, removing: fraction, options: options, calibration: calibration,
                                    quantizationGroup: quantizes ? options.groupSize : nil,
                                    writesRecords: !options.refit && !quantizes, progress: progress)
            narrowing = shrunk.narrowing
            records += shrunk.records
            recipe.shrink = fraction
            recipe.shrinkScope = options.shrinkScope.rawValue
            recipe.expertWidths = shrunk.widths
        }

        // 1c. Recovery: refit down projections and fit novice vectors, layer by layer.
        if options.refit || options.noviceFit == .leastSquares {
            try recover(layers: &layers, derived: &derived, narrowing: narrowing, noviceVectors: &noviceVectors, options: options,
                        calibration: calibration, progress: progress)
            recipe.refitRidge = options.refit ? options.refitRidge : nil
            recipe.noviceFit = noviceCount > 0 ? options.noviceFit.rawValue : nil
        }
        for (l, vectors) in noviceVectors {
            for (e, vector) in vectors {
                records.append(ExpertVariants.record(ExpertKey(layer: l, expert: e, variant: ExpertVariant(rawValue: ExpertVariants.novice(plan: options.name))), novice: vector))
            }
        }

        // 2. Precision: quantize every weight slot, at allocated or uniform widths.
        var bitHistogram = [Int: Int]()
        if quantizes {
            let quantized = try quantize(layers: &layers, derived: derived, narrowing: narrowing, options: options,
                                         calibration: calibration, progress: progress)
            records += quantized.records
            bitHistogram = quantized.histogram
        } else {
            let dtype = try originalDType()
            for (l, slots) in derived {
                for (slot, expert) in slots {
                    let record = layers[l]!.slots[slot].record
                    let key = ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))
                    // Merged experts are stored in f32; refit ones in the imported experts' dtype.
                    if case .merged = layers[l]!.slots[slot] {
                        records.append(ExpertVariants.record(key, merged: expert))
                    } else {
                        records.append(ExpertVariants.record(key, weights: expert, dtype: dtype))
                    }
                }
            }
        }

        let recordBytes = Dictionary(records.map { ("\($0.key.layer)/\($0.key.expert)/\($0.key.variant.rawValue)", $0.byteCount) }, uniquingKeysWith: { a, _ in a })
        let originalBytesPerExpert = try originalRecordBytes()
        var expected = 0
        for (l, layer) in layers.enumerated() {
            guard let layer else { continue }
            for slot in layer.slots {
                let record = slot.record
                if record.variant == 0 {
                    expected += originalBytesPerExpert
                } else if let bytes = recordBytes["\(l)/\(record.expert)/\(record.variant)"] {
                    expected += bytes
                } else if let existing = try store.expertRecord(ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))) {
                    expected += existing.byteCount
                }
            }
        }
        let original = description.moeLayerIndices.reduce(0) { $0 + description.layers[$1].moe!.expertCount } * originalBytesPerExpert
        var plan = CompressionPlan(name: options.name, modelFingerprint: fingerprint, recipe: recipe, layers: layers, expectedExpertBytes: expected)
        var denseVariants = [(name: String, variant: String, bytes: [UInt8])]()
        if let bits = options.denseBits {
            let (quantization, variants) = try quantizeDense(bits: bits, groupSize: options.groupSize, writeNow: options.layerRecordSink != nil, progress: progress)
            plan.denseQuantization = quantization
            denseVariants = variants
        }
        plan.expectedDenseBytes = try DenseFootprint.bytes(store: store, quantization: plan.denseQuantization, precision: options.replayPrecision)
        try plan.validate(against: description, fingerprint: fingerprint)
        var result = SlimResult(plan: plan, records: records, originalExpertBytes: original, bitHistogram: bitHistogram,
                                noviceCount: noviceCount, mergedGroupCount: mergedGroups)
        result.denseVariants = denseVariants
        return result
    }

    /// Writes the records and the plan into the store in one transaction (quantized dense
    /// tensors just before, in their own: they are shared by every plan of their format, so
    /// one left behind by a failed commit is reused, never wrong).
    public func commit(_ result: SlimResult) throws {
        if !result.denseVariants.isEmpty { try store.putDenseVariants(result.denseVariants) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try store.putExpertRecords(result.records, plan: (result.plan.name, try encoder.encode(result.plan)))
    }

    // MARK: Dense weights

    /// Round-to-nearest quantization of every dense tensor `DenseQuantization` covers whose
    /// rows are whole groups, one tensor at a time and a block of rows at a time (so even a
    /// 150k-row output head is never widened whole). Formats already stored are reused;
    /// `writeNow` writes each new one at once (streaming) instead of returning it.
    private func quantizeDense(bits: Int, groupSize: Int, writeNow: Bool, progress: (String) -> Void) throws
        -> (DenseQuantization, [(name: String, variant: String, bytes: [UInt8])]) {
        let format = try QuantizationFormat(bits: bits, groupSize: groupSize)
        let tensors = try StoreTensorProvider(store: store)
        var quantization = DenseQuantization(bits: bits, groupSize: groupSize, tensors: [])
        var variants = [(name: String, variant: String, bytes: [UInt8])]()
        for spec in DenseQuantization.candidates(description, tensors: tensors) where spec.shape[1] % groupSize == 0 {
            quantization.tensors.append(spec.name)
            if try store.containsDenseVariant(spec.name, variant: quantization.variant) { continue }
            let weight = try tensors.weight(spec.name, shape: spec.shape, precision: .stored)
            let quantized = try QuantizedMatrix(quantizingRowsOf: weight, format: format)
            let variant = (name: spec.name, variant: quantization.variant, bytes: quantized.encoded())
            if writeNow { try store.putDenseVariants([variant]) } else { variants.append(variant) }
            progress("quantized \(spec.name)")
        }
        return (quantization, variants)
    }

    // MARK: Merging

    /// Layer → group count, for the layers whose router picks its top-k among the best
    /// `topk_group` of `n_group` equal groups.
    static func limitingGroups(_ description: ModelDescription) -> [Int: Int] {
        var groups = [Int: Int]()
        for l in description.moeLayerIndices {
            let router = description.layers[l].moe!.router
            if router.groupCount > 1, router.topGroupCount < router.groupCount { groups[l] = router.groupCount }
        }
        return groups
    }

    /// Groups of experts to merge (each group's first member is its anchor), covering the layer.
    func mergeGroups(layer l: Int, profile: RoutingProfile, method: SlimOptions.MergeMethod, keepFraction: Double,
                     topK: Int, protected: Set<LayerExpert>) throws -> [[Int]] {
        guard let stats = profile.layers[l] else { return [] }
        let experts = stats.expertCount
        let target = max(topK, Int((Double(experts) * keepFraction).rounded()))
        let supers = Set(protected.filter { $0.layer == l }.map(\.expert))
        switch method {
        case .hcSMoE:
            guard stats.denseTokenCount > 0 else {
                throw PlanError.invalid(plan: "", reason: "HC-SMoE needs dense output samples; profile with dense sampling on")
            }
            // Super experts stay singletons; the rest are clustered by their all-token mean output.
            let others = (0..<experts).filter { !supers.contains($0) }
            let clusters = max(1, target - supers.count)
            let features = Matrix(rows: others.count, columns: stats.hiddenSize,
                                  values: others.flatMap { stats.denseOutputMean($0).map { Float($0) } })
            let clustering = try AgglomerativeClustering.averageLinkage(features: features, clusterCount: min(clusters, others.count))
            let groups = clustering.clusters.map { cluster in
                cluster.map { others[$0] }.sorted { stats.experts[$0].count > stats.experts[$1].count }
            }
            return (groups + supers.sorted().map { [$0] }).sorted { $0.min()! < $1.min()! }
        case .mSMoE:
            // The most frequent experts (super experts first) anchor the groups; every other
            // expert joins the anchor whose router-logit column it is most similar to.
            let byFrequency = (0..<experts).sorted { (supers.contains($0) ? 1 : 0, stats.experts[$0].count) > (supers.contains($1) ? 1 : 0, stats.experts[$1].count) }
            let anchors = Array(byFrequency.prefix(target))
            var groups = anchors.map { [$0] }
            for e in byFrequency.dropFirst(target) {
                let best = anchors.indices.max { stats.logitCosine(e, anchors[$0]) < stats.logitCosine(e, anchors[$1]) }!
                groups[best].append(e)
            }
            return groups.sorted { $0.min()! < $1.min()! }
        }
    }

    // MARK: Recovery

    /// Walks the layers in order on calibration text through the model as compressed so far
    /// and, in each pruned or merged MoE layer, refits the routed slots' down projections
    /// and/or fits the novice vectors (`LayerRefit`), then moves the hidden states on through
    /// the recovered layer. Refit slots become `ExpertVariants.refit` variants held in
    /// `derived` (merged slots keep their variant, with the new down projection).
    private func recover(layers: inout [LayerPlan?], derived: inout [Int: [Int: FeedForward]], narrowing: [Int: [Int: [Int]]],
                         noviceVectors: inout [Int: [Int: [Float]]], options: SlimOptions, calibration: [[Int]],
                         progress: (String) -> Void) throws {
        guard !calibration.isEmpty else {
            throw PlanError.invalid(plan: options.name, reason: "the refit and least-squares novices fit on calibration text; none was given")
        }
        let refit = LayerRefit(refitsDown: options.refit, fitsNovices: options.noviceFit == .leastSquares, ridge: options.refitRidge)
        var replay = try RecoveryReplay(store: store, calibration: calibration, precision: options.replayPrecision)
        for l in 0..<description.layerCount {
            // A layer whose routing and experts are all as imported has nothing to recover.
            guard var plan = layers[l], !(plan.expertMap.isIdentity && narrowing[l] == nil && derived[l] == nil) else {
                try replay.advance(layer: l, plan: nil, slots: [])
                continue
            }
            func slotExperts() throws -> [any Expert] {
                try plan.slots.enumerated().map { s, slot -> any Expert in
                    if case let .novice(e, _) = slot { return ConstantExpert(vector: noviceVectors[l]![e]!) }
                    return try slotWeights(layer: l, slot: s, of: plan, derived: derived, narrowing: narrowing)!
                }
            }
            let experts = try slotExperts()
            let (full, compressed) = try replay.samples(layer: l, plan: plan, slots: experts)
            var weights = [Int: FeedForward](), novices = [Int: [Float]]()
            for (s, slot) in plan.slots.enumerated() {
                if case let .novice(e, _) = slot { novices[s] = noviceVectors[l]![e]! } else { weights[s] = experts[s] as? FeedForward }
            }
            let solution = try refit.solve(full: full, compressed: compressed, map: plan.expertMap, weights: weights, novices: novices)
            for (s, down) in solution.downs {
                let old = weights[s]!
                derived[l, default: [:]][s] = old.withWeights(gate: old.gate, up: old.up, down: down)
                if case let .expert(e, _) = plan.slots[s] { plan.slots[s] = .expert(e, variant: ExpertVariants.refit(plan: options.name)) }
            }
            for (s, vector) in solution.novices {
                if case let .novice(e, _) = plan.slots[s] { noviceVectors[l]![e] = vector }
            }
            layers[l] = plan
            try replay.advance(layer: l, plan: plan, slots: try slotExperts())
            // Streaming without quantization: this layer's refit experts are final, so they are
            // written now rather than held for the plan's commit.
            if let sink = options.layerRecordSink, options.averageBits == nil && options.uniformBits == nil, let refitSlots = derived[l] {
                let dtype = try originalDType()
                try sink(refitSlots.compactMap { s, expert in
                    guard case let .expert(e, variant) = plan.slots[s] else { return nil }
                    derived[l]![s] = nil
                    return ExpertVariants.record(ExpertKey(layer: l, expert: e, variant: ExpertVariant(rawValue: variant)), weights: expert, dtype: dtype)
                })
            }
            progress("recovered layer \(l)")
        }
    }

    // MARK: Pruning inside experts

    /// A routed slot's weights as the plan has them so far: merged or refit weights, else the
    /// imported expert, narrowed to its kept neurons if shrinking chose some (nil for a novice).
    private func slotWeights(layer l: Int, slot s: Int, of plan: LayerPlan, derived: [Int: [Int: FeedForward]],
                             narrowing: [Int: [Int: [Int]]]) throws -> FeedForward? {
        let weights: FeedForward
        switch plan.slots[s] {
        case .novice: return nil
        case let .expert(e, _): weights = try derived[l]?[s] ?? originalExpert(layer: l, expert: e)
        case .merged: weights = derived[l]![s]!
        }
        guard let neurons = narrowing[l]?[s], neurons.count != weights.intermediateSize else { return weights }
        return weights.keepingNeurons(neurons)
    }

    /// Scores every neuron of every routed slot on the tokens the full model routes to it
    /// (`ExpertShrinking.neuronEnergy`) and keeps the best `1 − fraction`, layer by layer.
    /// Merged slots are narrowed in `derived`; an expert's own slot becomes a shrunk variant
    /// whose kept neurons are returned (its weights are cut from the imported ones when needed,
    /// so no layer but the current one is held). `quantizationGroup`: the group the plan
    /// quantizes experts in afterwards, which kept widths must fill. `writesRecords`: nothing after this changes
    /// the weights (no refit, no quantization), so the shrunk records are made here, and
    /// written at once when streaming.
    private func shrink(layers: inout [LayerPlan?], derived: inout [Int: [Int: FeedForward]], removing fraction: Double,
                        options: SlimOptions, calibration: [[Int]], quantizationGroup: Int?, writesRecords: Bool,
                        progress: (String) -> Void) throws
        -> (narrowing: [Int: [Int: [Int]]], records: [ExpertRecord], widths: [Int]) {
        guard fraction >= 0 && fraction < 1 else {
            throw PlanError.invalid(plan: options.name, reason: "--shrink must be in [0, 1), got \(fraction)")
        }
        guard !calibration.isEmpty else {
            throw PlanError.invalid(plan: options.name, reason: "shrinking scores neurons on calibration text; none was given")
        }
        let dtype = try originalDType()
        var narrowing = [Int: [Int: [Int]]](), records = [ExpertRecord](), widths = [Int]()
        var source = try calibrationReplay(options: options, calibration: calibration, progress: progress)
        for l in description.moeLayerIndices {
            guard let plan = layers[l] else { continue }
            let routed = try source.inputs(layer: l, progress: progress)
            let slots = plan.slots.indices.filter { plan.slots[$0].isRouted }
            let weights = try slots.map { try slotWeights(layer: l, slot: $0, of: plan, derived: derived, narrowing: [:])! }
            let scores = zip(slots, weights).map { s, w in
                let (x, gates, _) = routed.rows(layer: l, experts: plan.slots[s].experts)
                return ExpertShrinking.neuronEnergy(w, x: x, gates: gates)
            }
            let granule = ExpertShrinking.granule(intermediateSize: description.layers[l].moe!.expertIntermediateSize,
                                                  quantizationGroup: quantizationGroup)
            let kept = ExpertShrinking.keptNeurons(scores: scores, removing: fraction, scope: options.shrinkScope, granule: granule)
            var layerRecords = [ExpertRecord]()
            for ((s, w), neurons) in zip(zip(slots, weights), kept) {
                widths.append(neurons.count)
                guard neurons.count < w.intermediateSize else { continue }   // nothing removed: the slot stays as it was
                switch plan.slots[s] {
                case .merged: derived[l]![s] = w.keepingNeurons(neurons)
                case let .expert(e, _):
                    let variant = ExpertVariants.shrunk(plan: options.name)
                    layers[l]!.slots[s] = .expert(e, variant: variant)
                    narrowing[l, default: [:]][s] = neurons
                    if writesRecords {
                        let key = ExpertKey(layer: l, expert: e, variant: ExpertVariant(rawValue: variant))
                        layerRecords.append(ExpertVariants.record(key, weights: w.keepingNeurons(neurons), dtype: dtype))
                    }
                case .novice: break
                }
            }
            if let sink = options.layerRecordSink { try sink(layerRecords) } else { records += layerRecords }
            progress("shrunk layer \(l)")
        }
        return (narrowing, records, widths.isEmpty ? [] : [widths.min()!, widths.max()!])
    }

    /// The tokens every expert receives in the full model, with their gates: in memory, or
    /// layer by layer from the store when the slim streams.
    private func calibrationReplay(options: SlimOptions, calibration: [[Int]], progress: (String) -> Void) throws -> any CalibrationReplay {
        if options.layerRecordSink != nil {
            return try StreamedReplay(store: store, calibration: calibration, precision: options.replayPrecision)
        }
        return try InMemoryReplay(model: store.loadModel(precision: options.replayPrecision), calibration: calibration, progress: progress)
    }

    // MARK: Quantization

    /// One quantized slot: its weights at a width, and the gate-weighted output error.
    private struct Candidate {
        var layer: Int
        var slot: Int
        var options: [(expert: QuantizedExpert?, error: Double)]
        /// Weights in the slot's three projections (narrower for shrunk experts).
        var parameters: Int
    }

    private func quantize(layers: inout [LayerPlan?], derived: [Int: [Int: FeedForward]], narrowing: [Int: [Int: [Int]]], options: SlimOptions,
                          calibration: [[Int]], progress: (String) -> Void) throws -> (records: [ExpertRecord], histogram: [Int: Int]) {
        guard !calibration.isEmpty else {
            throw PlanError.invalid(plan: options.name, reason: "quantization measures errors on calibration text; none was given")
        }
        let choices = options.uniformBits.map { [$0] } ?? options.bitChoices.sorted()
        let formats = try choices.map { try QuantizationFormat(bits: $0, groupSize: options.groupSize) }
        // Replay: the tokens every expert receives in the full model, with their gates.
        func replay() throws -> any CalibrationReplay { try calibrationReplay(options: options, calibration: calibration, progress: progress) }
        // Streaming keeps no quantized weights across layers: with several widths it measures
        // every width's error in a first replay, allocates, then quantizes the chosen width of
        // each slot in a second replay (quantization is deterministic, so the weights are the ones measured).
        let keepWeights = options.layerRecordSink == nil || choices.count == 1
        var candidates = [Candidate]()
        var records = [ExpertRecord]()
        var histogram = [Int: Int]()
        var source = try replay()
        for l in description.moeLayerIndices {
            guard layers[l] != nil else { continue }
            let layerCandidates = try quantizeLayer(l, plan: layers[l]!, derived: derived, narrowing: narrowing, routed: source.inputs(layer: l, progress: progress),
                                                    formats: { _ in formats }, keepWeights: keepWeights, options: options)
            progress("quantized candidates of layer \(l)")
            if choices.count == 1 {
                records += try apply(layerCandidates, picks: layerCandidates.map { _ in 0 }, choices: choices, formats: formats,
                                     layers: &layers, histogram: &histogram, options: options)
            } else {
                candidates += layerCandidates
            }
        }
        guard choices.count > 1, let average = options.averageBits else { return (records, histogram) }
        // Exact multiple-choice knapsack over code bits (scales and minimums are not budgeted).
        let items = candidates.map { c in zip(choices, c.options).map { BitAllocation.Option(bits: $0, cost: $0 * c.parameters, error: $1.error) } }
        let parameterCount = candidates.reduce(0) { $0 + $1.parameters }
        let picks = try BitAllocation.solve(items, budget: BitAllocation.budget(averageBits: average, parameterCount: parameterCount)).choices
        if keepWeights {
            records += try apply(candidates, picks: picks, choices: choices, formats: formats, layers: &layers, histogram: &histogram, options: options)
            return (records, histogram)
        }
        var pick = [String: Int]()
        for (c, p) in zip(candidates, picks) { pick["\(c.layer)/\(c.slot)"] = p }
        source = try replay()
        for l in description.moeLayerIndices {
            guard layers[l] != nil else { continue }
            let chosen = try quantizeLayer(l, plan: layers[l]!, derived: derived, narrowing: narrowing, routed: source.inputs(layer: l, progress: progress),
                                           formats: { [formats[pick["\(l)/\($0)"]!]] }, keepWeights: true, options: options)
            // Each candidate now holds only its chosen width; map it back to its index in `choices`.
            records += try apply(chosen, picks: chosen.map { _ in 0 }, choices: choices, formats: formats, layers: &layers,
                                 histogram: &histogram, options: options, chosenIndex: { pick["\(l)/\($0.slot)"]! })
            progress("quantized layer \(l)")
        }
        return (records, histogram)
    }

    /// Quantizes every weight slot of layer `l` at each of `formats(slot)`, measuring what each
    /// width does to the block output on the tokens routed to the slot.
    ///
    /// With one width per slot the error is `Σ_t g_t² ‖Δ(x_t)‖²` (`Δ = E − Ê`), the block-output
    /// error of quantizing that slot alone. When widths are to be allocated, each slot's error
    /// is measured with every other slot of the layer quantized at a baseline width `b₀` (the
    /// choice nearest the average), so errors that add up or cancel on shared tokens count:
    ///
    ///     Q_{j,b} = Σ_t ‖g_{t,j} Δ_{j,b}(x_t) + B_t‖² − ‖B_t‖²,   B_t = Σ_{k≠j} g_{t,k} Δ_{k,b₀}(x_t)
    ///
    /// (MC-MoE's block-output loss, METHODS §2, with the gates and the other experts present).
    private func quantizeLayer(_ l: Int, plan layer: LayerPlan, derived: [Int: [Int: FeedForward]], narrowing: [Int: [Int: [Int]]], routed: RoutedInputs,
                               formats: (Int) -> [QuantizationFormat], keepWeights: Bool, options: SlimOptions) throws -> [Candidate] {
        let d = description.hiddenSize
        func weights(_ s: Int) throws -> FeedForward? { try slotWeights(layer: l, slot: s, of: layer, derived: derived, narrowing: narrowing) }
        func quantized(_ w: FeedForward, _ x: Matrix, _ gates: [Float], _ format: QuantizationFormat) throws -> QuantizedExpert {
            options.gptq ? try gptq(w, x: x, gates: gates, format: format) : try QuantizedExpert(quantizing: w, format: format)
        }
        /// `g_t · (reference_t − approximation_t)`, row by row.
        func gatedDifference(_ reference: Matrix, _ approximation: Matrix, _ gates: [Float]) -> [Float] {
            var out = reference.values
            for i in out.indices { out[i] = gates[i / d] * (out[i] - approximation.values[i]) }
            return out
        }
        let allocates = layer.slots.indices.contains { formats($0).count > 1 }
        let baselineOf: ([QuantizationFormat]) -> Int = { choices in
            let target = options.averageBits ?? Double(choices[choices.count / 2].bits)
            return choices.indices.min { abs(Double(choices[$0].bits) - target) < abs(Double(choices[$1].bits) - target) }!
        }
        // Σ over slots of their gated errors at the baseline width, per token.
        var baselineError = [Float]()
        if allocates {
            baselineError = [Float](repeating: 0, count: (routed.tokenCounts[l] ?? 0) * d)
            for s in layer.slots.indices {
                guard let w = try weights(s) else { continue }
                let (x, gates, tokens) = routed.rows(layer: l, experts: layer.slots[s].experts)
                guard x.rows > 0 else { continue }
                let choices = formats(s)
                let delta = gatedDifference(w.forward(x), try quantized(w, x, gates, choices[baselineOf(choices)]).forward(x), gates)
                for (i, t) in tokens.enumerated() { for c in 0..<d { baselineError[t * d + c] += delta[i * d + c] } }
            }
        }
        var candidates = [Candidate]()
        for s in layer.slots.indices {
            guard let w = try weights(s) else { continue }
            let (x, gates, tokens) = routed.rows(layer: l, experts: layer.slots[s].experts)
            let reference = x.rows > 0 ? w.forward(x) : Matrix(zeros: 0, d)
            let choices = formats(s)
            let experts = try choices.map { try quantized(w, x, gates, $0) }
            var errors = experts.map { x.rows > 0 ? Self.gatedError(reference, $0.forward(x), gates: gates) : 0 }
            if allocates && choices.count > 1 && x.rows > 0 {
                let deltas = experts.map { gatedDifference(reference, $0.forward(x), gates) }
                let own = deltas[baselineOf(choices)]
                // B_t: the other slots' baseline errors on this slot's tokens.
                var others = [Float](repeating: 0, count: x.rows * d)
                for (i, t) in tokens.enumerated() { for c in 0..<d { others[i * d + c] = baselineError[t * d + c] - own[i * d + c] } }
                errors = deltas.map { delta in
                    zip(delta, others).reduce(0.0) { sum, pair in
                        let (a, b) = (Double(pair.0), Double(pair.1))
                        return sum + (a + b) * (a + b) - b * b
                    }
                }
            }
            candidates.append(Candidate(layer: l, slot: s, options: zip(experts, errors).map { (keepWeights ? $0 : nil, $1) },
                                        parameters: w.gate.count + w.up.count + w.down.count))
        }
        return candidates
    }

    /// Points each candidate's slot at its picked width and returns the records to write (or,
    /// streaming, writes them at once through `options.layerRecordSink` and returns none).
    private func apply(_ candidates: [Candidate], picks: [Int], choices: [Int], formats: [QuantizationFormat],
                       layers: inout [LayerPlan?], histogram: inout [Int: Int], options: SlimOptions,
                       chosenIndex: ((Candidate) -> Int)? = nil) throws -> [ExpertRecord] {
        var records = [ExpertRecord]()
        for (c, pick) in zip(candidates, picks) {
            let index = chosenIndex?(c) ?? pick
            let bits = choices[index]
            histogram[bits, default: 0] += 1
            let slot = layers[c.layer]!.slots[c.slot]
            let shared = !options.gptq && slot.record.variant == 0
            let variant = shared ? ExpertVariants.quantized(formats[index]) : ExpertVariants.gptq(plan: options.name, bits: bits)
            let key = ExpertKey(layer: c.layer, expert: slot.record.expert, variant: ExpertVariant(rawValue: variant))
            let alreadyStored = shared ? try store.containsExpertRecord(key) : false
            if !alreadyStored {
                records.append(ExpertVariants.record(key, quantized: c.options[pick].expert!))
            }
            switch slot {
            case let .expert(e, _): layers[c.layer]!.slots[c.slot] = .expert(e, variant: variant)
            case let .merged(members, weights, _): layers[c.layer]!.slots[c.slot] = .merged(members: members, weights: weights, variant: variant)
            case .novice: break
            }
        }
        guard let sink = options.layerRecordSink, !records.isEmpty else { return records }
        try sink(records)
        return []
    }

    /// GPTQ of the three projections with gate²-weighted input Hessians (the weighting makes
    /// the objective the expert's contribution to the block output).
    private func gptq(_ expert: FeedForward, x: Matrix, gates: [Float], format: QuantizationFormat) throws -> QuantizedExpert {
        guard x.rows > 0 else { return try QuantizedExpert(quantizing: expert, format: format) }
        let weights = gates.map { $0 * $0 }
        var inputHessian = InputHessian(dimension: x.columns)
        inputHessian.add(x, weights: weights)
        let activation = expert.activation(x)   // what the down projection sees, biases and activation included
        var innerHessian = InputHessian(dimension: activation.columns)
        innerHessian.add(activation, weights: weights)
        let g = GPTQ(format: format)
        return try QuantizedExpert(gate: g.quantize(expert.gate, hessian: inputHessian.values).matrix,
                                   up: g.quantize(expert.up, hessian: inputHessian.values).matrix,
                                   down: g.quantize(expert.down, hessian: innerHessian.values).matrix,
                                   biases: expert.biases, gating: expert.gating)
    }

    /// Σ_t g_t² ‖E(x_t) − Ê(x_t)‖²: the squared error this expert adds to the block output.
    static func gatedError(_ reference: Matrix, _ approximation: Matrix, gates: [Float]) -> Double {
        var total = 0.0
        let d = reference.columns
        for t in 0..<reference.rows {
            var sum = 0.0
            for c in 0..<d {
                let diff = Double(reference.values[t * d + c] - approximation.values[t * d + c])
                sum += diff * diff
            }
            total += Double(gates[t] * gates[t]) * sum
        }
        return total
    }

    // MARK: Store access

    /// The imported weights of one expert, widened to f32, with its biases (gpt-oss) and the
    /// layer's activation.
    func originalExpert(layer: Int, expert: Int) throws -> FeedForward {
        let key = ExpertKey(layer: layer, expert: expert)
        guard let record = try store.expertRecord(key) else {
            throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
        }
        let function = description.layers[layer].moe!.expertFunction
        guard record.kind == .expertSwiGLU, record.tensors.count == (function.hasBias ? 6 : 3) else {
            throw StoreError.corruptRecord(path: store.path, record: "expert record (\(key))",
                                           reason: "compression reads 16-bit or f32 experts of \(function.hasBias ? "three weights and three biases" : "three weights"), found a \(record.kind) record of \(record.tensors.count) tensors")
        }
        let values = try record.tensors.indices.map { i -> [Float] in
            let layout = record.tensors[i]
            let n = layout.elementCount
            var values = [Float](repeating: 0, count: n)
            try record.payloads[i].withUnsafeBytes { raw in
                switch layout.dtype {
                case .f32: values.withUnsafeMutableBytes { $0.copyMemory(from: raw) }
                case .bf16: moe_bf16_to_f32(raw.bindMemory(to: UInt16.self).baseAddress, &values, n)
                case .f16: moe_f16_to_f32(raw.bindMemory(to: UInt16.self).baseAddress, &values, n)
                default: throw StoreError.unsupportedDType(path: store.path, record: "expert record (\(key))", dtype: layout.dtype.rawValue, purpose: "expert weights")
                }
            }
            return values
        }
        let m = (0..<3).map { Matrix(rows: record.tensors[$0].shape[0], columns: record.tensors[$0].shape[1], values: values[$0]) }
        let biases = function.hasBias ? ExpertBiases(gate: values[3], up: values[4], down: values[5]) : nil
        return FeedForward(gate: m[0], up: m[1], down: m[2], biases: biases, gating: function.activation)
    }

    /// The first imported expert record: every imported expert shares its dtypes and size.
    private func firstOriginalRecord() throws -> ExpertRecord? {
        guard let l = description.moeLayerIndices.first else { return nil }
        return try store.expertRecord(ExpertKey(layer: l, expert: 0))
    }

    /// The dtype of the imported experts' weights.
    private func originalDType() throws -> DType { try firstOriginalRecord()?.tensors[0].dtype ?? .f32 }

    /// Bytes of one imported expert record's tensors.
    private func originalRecordBytes() throws -> Int { try firstOriginalRecord()?.byteCount ?? 0 }

    /// The most experts any MoE layer chooses per token: pruning keeps at least this many.
    private func minimumTopK(_ options: SlimOptions) throws -> Int {
        try description.moeLayerIndices.map { try topK(layer: $0, options: options) }.max() ?? 1
    }

    /// Experts layer `l` chooses per token under the plan's rule (`--top-k`), else the family's.
    private func topK(layer l: Int, options: SlimOptions) throws -> Int {
        guard let counts = options.topK else { return description.layers[l].moe!.topK }
        let moeLayers = description.moeLayerIndices
        guard counts.count == 1 || counts.count == moeLayers.count else {
            throw PlanError.invalid(plan: options.name, reason: "--top-k gives \(counts.count) values; give one, or one per MoE layer (\(moeLayers.count))")
        }
        return counts.count == 1 ? counts[0] : counts[moeLayers.firstIndex(of: l)!]
    }

    /// Sets every MoE layer's routing rule from `--top-k` and `--skip`; a rule equal to the
    /// family's routing is left out, so such a layer stays unmodified.
    private func applyRoutingRules(_ layers: inout [LayerPlan?], options: SlimOptions, profile: RoutingProfile) throws {
        for l in description.moeLayerIndices {
            let moe = description.layers[l].moe!
            let k = try topK(layer: l, options: options)
            var rule = RoutingRule(topK: k == moe.topK ? nil : k)
            do {
                rule.skip = try options.skip?.resolve(layer: l, profile: profile.layers[l], topK: k)
            } catch {
                throw PlanError.invalid(plan: options.name, reason: error.description)
            }
            if let problem = rule.problem(familyTopK: moe.topK, routable: layers[l]!.expertMap.survivingExperts.count) {
                throw PlanError.invalid(plan: options.name, reason: "layer \(l): \(problem)")
            }
            layers[l]!.expertMap.routingRule = rule == RoutingRule() ? nil : rule
        }
    }
}
