import Routing

/// A mixture-of-experts feed-forward block: router, routed experts (from an `ExpertSource`),
/// and an optional shared expert.
struct MoEBlock: Sendable {
    let layer: Int
    let config: MoEDescription
    let routerWeight: Matrix          // [experts, hidden]
    /// Added to the router logits (gpt-oss's router is a linear layer with bias).
    let routerBias: [Float]?
    let router: Router
    let shared: (any Expert)?
    let sharedGate: Matrix?           // [1, hidden]
    /// Which router rows remain and which slot each chosen expert runs in (identity = unmodified).
    let expertMap: ExpertMap
    /// The router before pruning, whose choices gate additive novices (nil without novices).
    let unprunedRouter: Router?

    init(layer l: Int, description d: ModelDescription, tensors: some TensorProvider, precision: WeightPrecision,
         expertMap: ExpertMap? = nil) throws {
        let moe = d.layers[l].moe!
        let n = d.names
        layer = l
        config = moe
        routerWeight = try tensors.matrix(n.router(l), shape: [moe.expertCount, d.hiddenSize])
        routerBias = moe.routerBias ? try tensors.vector(n.routerBias(l), count: moe.expertCount) : nil
        let bias = moe.router.usesCorrectionBias ? try tensors.vector(n.correctionBias(l), count: moe.expertCount) : nil
        let map = expertMap ?? .identity(expertCount: moe.expertCount)
        let topK = map.routingRule?.topK ?? moe.topK
        guard map.expertCount == moe.expertCount, map.survivingExperts.count >= topK else {
            throw ModelError.invalidExpertMap(layer: l, reason: "it covers \(map.expertCount) experts and keeps \(map.survivingExperts.count); the layer has \(moe.expertCount) with top-\(topK)")
        }
        self.expertMap = map
        if let problem = map.routingRule?.problem(familyTopK: moe.topK, routable: map.survivingExperts.count) {
            throw ModelError.invalidExpertMap(layer: l, reason: problem)
        }
        router = Router(config: moe.router, correctionBias: bias, available: map.isIdentity ? nil : map.available, rule: map.routingRule)
        unprunedRouter = map.hasNovices ? Router(config: moe.router, correctionBias: bias) : nil
        if let sharedExpert = moe.sharedExpert {
            shared = try tensors.feedForward(gate: n.sharedExpert(l, .gate)!, up: n.sharedExpert(l, .up)!,
                                             down: n.sharedExpert(l, .down)!, hidden: d.hiddenSize,
                                             intermediate: sharedExpert.intermediateSize, precision: precision)
            sharedGate = sharedExpert.gated ? try tensors.matrix(n.sharedExpertGateName(l)!, shape: [1, d.hiddenSize]) : nil
        } else {
            (shared, sharedGate) = (nil, nil)
        }
    }

    /// Routes every token, then runs each chosen expert once on all the tokens sent to it.
    /// With an observer, also reports the routing and the per-slot expert outputs;
    /// `residual` is the residual stream entering the block (only needed for observation).
    /// `skips`, when given, is each row's skip rule in place of the router's (see `rowSkips`).
    func forward(_ x: Matrix, experts: some ExpertSource, residual: Matrix? = nil, skips: [ExpertSkip?]? = nil,
                 observer: (any RoutingObserver)? = nil) throws -> Matrix {
        var logits = LinearAlgebra.linear(x, routerWeight)
        if let routerBias { LinearAlgebra.addBias(&logits, routerBias) }
        let decisions = logits.values.withUnsafeBufferPointer { all in
            (0..<x.rows).map { t in
                let row = UnsafeBufferPointer(rebasing: all[(t * config.expertCount)..<((t + 1) * config.expertCount)])
                return skips.map { router.route(logits: row, skipping: $0[t]) } ?? router.route(logits: row)
            }
        }
        // Group (token, position in its decision, gate) by computation slot so each slot is one
        // matrix product. Without a plan a slot is an expert; with one, merged experts share a
        // slot and their gates add up.
        var assignments = [[(token: Int, slot: Int, gate: Float)]](repeating: [], count: expertMap.slotCount)
        let unmodified = expertMap.isIdentity
        for (t, decision) in decisions.enumerated() {
            if unmodified {
                for (position, (e, g)) in zip(decision.experts, decision.gates).enumerated() { assignments[e].append((t, position, g)) }
            } else {
                for (position, (slot, g)) in expertMap.slots(for: decision).enumerated() { assignments[slot].append((t, position, g)) }
            }
        }
        // Additive novices: gated as the unpruned router would gate their experts, outside the
        // top-k (position -1: observers see only the routed slots).
        if let unprunedRouter {
            logits.values.withUnsafeBufferPointer { all in
                for t in 0..<x.rows {
                    let full = unprunedRouter.route(logits: UnsafeBufferPointer(rebasing: all[(t * config.expertCount)..<((t + 1) * config.expertCount)]))
                    for (slot, g) in expertMap.noviceSlots(for: full) { assignments[slot].append((t, -1, g)) }
                }
            }
        }
        let width = x.columns
        let slots = router.config.topK
        var output = Matrix(zeros: x.rows, width)
        let recordsOutputs = observer?.needsExpertOutputs ?? false
        var slotOutputs = recordsOutputs ? [Float](repeating: 0, count: x.rows * slots * width) : []
        let used = assignments.indices.filter { !assignments[$0].isEmpty }
        // Adds one slot's result into the output (and the observer's per-slot outputs).
        func accumulate(_ result: Matrix, slot e: Int) {
            for (i, assignment) in assignments[e].enumerated() {
                let target = assignment.token * width
                for c in 0..<width { output.values[target + c] += assignment.gate * result.values[i * width + c] }
                if recordsOutputs && assignment.slot >= 0 {
                    let slotBase = (assignment.token * slots + assignment.slot) * width
                    for c in 0..<width { slotOutputs[slotBase + c] = result.values[i * width + c] }
                }
            }
        }
        if let chosen = try Self.parallelExperts(used, rows: { assignments[$0].count },
                                                 fetch: { try experts.expert(layer: layer, index: $0) }) {
            let results = Self.runInParallel(chosen, on: used.map { x.gatherRows(assignments[$0].map(\.token)) })
            for (result, e) in zip(results, used) { accumulate(result, slot: e) }
        } else {
            // One expert at a time, each fetched, run and released before the next: a source
            // that does not cache (a layer streamed from the store) holds one expert at once.
            for e in used {
                accumulate(try experts.expert(layer: layer, index: e).forward(x.gatherRows(assignments[e].map(\.token))), slot: e)
            }
        }
        if let observer {
            let layer = self.layer
            try observer.observe(MoELayerObservation(
                layer: layer, tokenCount: x.rows, expertCount: config.expertCount, hiddenSize: width,
                routerLogits: logits.values, decisions: decisions, expertOutputs: slotOutputs,
                residualBefore: residual?.values ?? [], routedOutput: output.values, blockInput: x.values,
                runExpert: { e, rows in try experts.expert(layer: layer, index: e).forward(x.gatherRows(rows)).values }))
        }
        if let shared {
            var sharedOut = shared.forward(x)
            if let sharedGate {
                let gateLogits = LinearAlgebra.linear(x, sharedGate)
                for t in 0..<x.rows {
                    let g = Functions.sigmoid(gateLogits.values[t])
                    for c in 0..<width { sharedOut.values[t * width + c] *= g }
                }
            }
            LinearAlgebra.add(&output, sharedOut)
        }
        return output
    }

    /// The experts of a step that should run side by side, or nil to run them one by one. A
    /// decode step sends a row or a few to each of its top-k experts, products too small to
    /// split well; when those experts compute on the calling thread (half-precision and
    /// quantized ones) they run side by side on the compute pool, one dispatch per layer. Each expert computes exactly what it would alone, and the
    /// caller adds the results in expert order, so the output does not depend on the choice.
    static func parallelExperts(_ used: [Int], rows: (Int) -> Int,
                                fetch: (Int) throws -> any Expert) throws -> [any Expert]? {
        guard ComputePool.threads > 1, used.count > 1,
              used.allSatisfy({ rows($0) <= LinearAlgebra.smallBatchLimit }) else { return nil }
        let chosen = try used.map(fetch)
        return chosen.allSatisfy(\.computesOnCallingThread) ? chosen : nil
    }

    static func runInParallel(_ experts: [any Expert], on inputs: [Matrix]) -> [Matrix] {
        var results = [Matrix](repeating: Matrix(zeros: 0, 0), count: experts.count)
        results.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer    // each task writes only its own element
            ComputePool.forEach(experts.count) { i in out[i] = experts[i].forward(inputs[i]) }
        }
        return results
    }
}

extension MoEBlock {
    /// Each row's skip rule when some sequence of the batch brings its own (`SkipOverride`),
    /// the router's for the others; nil when none does, so the usual path runs unchanged.
    func rowSkips(_ segments: [SequenceSegment]) -> [ExpertSkip?]? {
        guard segments.contains(where: { $0.skip != nil }) else { return nil }
        var rules = [ExpertSkip?](repeating: router.skip, count: segments.last?.rows.upperBound ?? 0)
        for segment in segments {
            guard let override = segment.skip else { continue }
            for r in segment.rows { rules[r] = override.layers[layer] }
        }
        return rules
    }
}
