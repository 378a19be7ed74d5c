import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Solves `A x = b` for every column of `b` by Gaussian elimination with partial pivoting,
/// in double: the independent reference for the ridge solvers.
private func gaussianSolve(_ a: [[Double]], _ b: [[Double]]) -> [[Double]] {
    let n = a.count
    var m = a, r = b
    for k in 0..<n {
        let p = (k..<n).max { abs(m[$0][k]) < abs(m[$1][k]) }!
        m.swapAt(k, p); r.swapAt(k, p)
        for i in (k + 1)..<n {
            let f = m[i][k] / m[k][k]
            for j in k..<n { m[i][j] -= f * m[k][j] }
            for j in r[i].indices { r[i][j] -= f * r[k][j] }
        }
    }
    var x = r
    for k in stride(from: n - 1, through: 0, by: -1) {
        for j in x[k].indices {
            var s = r[k][j]
            for i in (k + 1)..<n { s -= m[k][i] * x[i][j] }
            x[k][j] = s / m[k][k]
        }
    }
    return x
}

/// `(ZᵀZ + λI) W = ZᵀY + λW₀` with λ = α · mean diag(ZᵀZ), from dense `Z`, by elimination.
private func directRidge(z: [[Double]], y: [[Double]], prior: [[Double]], alpha: Double) -> [[Double]] {
    let n = prior.count
    var gram = (0..<n).map { i in (0..<n).map { j in z.reduce(0.0) { $0 + $1[i] * $1[j] } } }
    let lambda = alpha * (0..<n).reduce(0.0) { $0 + gram[$1][$1] } / Double(n)
    var right = (0..<n).map { i in (0..<y[0].count).map { c in zip(z, y).reduce(0.0) { $0 + $1.0[i] * $1.1[c] } + lambda * prior[i][c] } }
    for i in 0..<n { gram[i][i] += lambda }
    right = gaussianSolve(gram, right)
    return right
}

final class RecoveryTests: XCTestCase {
    // MARK: The solvers against a direct solution

    /// Three blocks on overlapping subsets of 40 rows, 2 output columns.
    private func blockProblem() -> (BlockRidge, z: [[Double]], y: [[Double]], prior: [[Double]]) {
        var random = SeededGenerator(seed: 7)
        let (t, d) = (40, 2)
        let widths = [3, 2, 1]
        let rowSets = [Array(0..<25), (0..<t).filter { $0 % 2 == 0 }, Array(18..<t)]
        var z = [[Double]](repeating: [Double](repeating: 0, count: widths.reduce(0, +)), count: t)
        var blocks = [BlockRidge.Block]()
        var offset = 0
        var prior = [[Double]]()
        for (width, rows) in zip(widths, rowSets) {
            var features = [Double]()
            for r in rows {
                for c in 0..<width {
                    let v = Double(random.normal())
                    features.append(v)
                    z[r][offset + c] = v
                }
            }
            let p = (0..<(width * d)).map { _ in Double(random.normal()) }
            prior += (0..<width).map { Array(p[($0 * d)..<(($0 + 1) * d)]) }
            blocks.append(BlockRidge.Block(rows: rows, features: features, width: width, prior: p))
            offset += width
        }
        let y = (0..<t).map { _ in (0..<d).map { _ in Double(random.normal()) } }
        return (BlockRidge(blocks: blocks, target: y.flatMap { $0 }, outputWidth: d), z, y, prior)
    }

    func testBlockRidgeEqualsDirectSolution() throws {
        let (ridge, z, y, prior) = blockProblem()
        let expected = directRidge(z: z, y: y, prior: prior, alpha: 0.1).flatMap { $0 }
        let joint = try ridge.solve(alpha: 0.1).flatMap { $0 }
        for (a, b) in zip(joint, expected) { XCTAssertEqual(a, b, accuracy: 1e-10) }
        // Block Gauss–Seidel (forced by a joint limit of one unknown) converges to the same solution.
        let byBlocks = try ridge.solve(alpha: 0.1, jointLimit: 1, sweeps: 200).flatMap { $0 }
        for (a, b) in zip(byBlocks, expected) { XCTAssertEqual(a, b, accuracy: 1e-8) }
    }

    func testHugeRidgeReturnsThePrior() throws {
        let (ridge, _, _, prior) = blockProblem()
        for (a, b) in zip(try ridge.solve(alpha: 1e12).flatMap { $0 }, prior.flatMap { $0 }) { XCTAssertEqual(a, b, accuracy: 1e-9) }
    }

    /// A hand-sized layer: 4 experts (d = 3, f = 2), experts 1 and 3 pruned, expert 1 a novice.
    private struct Layer {
        var experts: [FeedForward]
        var full: LayerSamples
        var compressed: LayerSamples
        var map: ExpertMap
        var noviceVector: [Float]
    }

    private func handLayer() throws -> Layer {
        var random = SeededGenerator(seed: 11)
        let (t, d) = (30, 3)
        let experts = (0..<4).map { _ in FeedForward(gate: random.matrix(2, d), up: random.matrix(2, d), down: random.matrix(d, 2)) }
        let x = (0..<(t * d)).map { _ in random.normal() }
        let target = (0..<(t * d)).map { _ in random.normal() }
        func decision(_ experts: [Int], _ gates: [Float]) -> RoutingDecision { RoutingDecision(experts: experts, gates: gates, scores: gates) }
        var fullDecisions = [RoutingDecision](), compressedDecisions = [RoutingDecision]()
        for i in 0..<t {
            let a = i % 4, b = (i * 3 + 1) % 4 == a ? (a + 1) % 4 : (i * 3 + 1) % 4
            let g = Float(0.3 + 0.4 * Double(i % 5) / 4)
            fullDecisions.append(decision([a, b], [g, 1 - g]))
            compressedDecisions.append(decision(i % 3 == 0 ? [2, 0] : [0, 2], [g, 1 - g]))
        }
        func samples(_ decisions: [RoutingDecision]) throws -> LayerSamples {
            let s = LayerSamples(layer: 0, hiddenSize: d)
            try s.observe(MoELayerObservation(layer: 0, tokenCount: t, expertCount: 4, hiddenSize: d, routerLogits: [], decisions: decisions,
                                              expertOutputs: [], residualBefore: x, routedOutput: target, blockInput: x,
                                              runExpert: { _, _ in [] }))
            return s
        }
        let map = ExpertMap(slotOfExpert: [0, nil, 1, nil], noviceSlotOfExpert: [nil, 2, nil, nil])
        return Layer(experts: experts, full: try samples(fullDecisions), compressed: try samples(compressedDecisions), map: map,
                     noviceVector: [0.5, -1, 2])
    }

    func testRefitEqualsDirectLeastSquares() throws {
        let layer = try handLayer()
        let (t, d, f) = (layer.full.tokenCount, 3, 2)
        let refit = LayerRefit(refitsDown: true, fitsNovices: true, ridge: 0.02)
        let result = try refit.solve(full: layer.full, compressed: layer.compressed, map: layer.map,
                                     weights: [0: layer.experts[0], 1: layer.experts[2]], novices: [2: layer.noviceVector])
        // Dense Z in double: [g·a_slot0 (2) | g·a_slot1 (2) | novice gate (1)], a = silu(Wg x) ⊙ (Wu x).
        func activation(_ e: FeedForward, _ row: Int) -> [Double] {
            (0..<f).map { i in
                var g = 0.0, u = 0.0
                for c in 0..<d {
                    let x = Double(layer.full.inputs[row * d + c])
                    g += Double(e.gate[i, c]) * x
                    u += Double(e.up[i, c]) * x
                }
                return g / (1 + exp(-g)) * u
            }
        }
        var z = [[Double]](repeating: [Double](repeating: 0, count: 2 * f + 1), count: t)
        for row in 0..<t {
            let routed = layer.compressed.decisions[row]
            for (e, g) in zip(routed.experts, routed.gates) {
                let slot = e == 0 ? 0 : 1
                for (i, a) in activation(layer.experts[e], row).enumerated() { z[row][slot * f + i] = Double(g) * a }
            }
            let full = layer.full.decisions[row]
            for (e, g) in zip(full.experts, full.gates) where e == 1 { z[row][2 * f] = Double(g) }
        }
        let y = (0..<t).map { r in (0..<d).map { Double(layer.full.routedOutputs[r * d + $0]) } }
        func downᵀ(_ e: FeedForward) -> [[Double]] { (0..<f).map { i in (0..<d).map { Double(e.down[$0, i]) } } }
        let prior = downᵀ(layer.experts[0]) + downᵀ(layer.experts[2]) + [layer.noviceVector.map(Double.init)]
        let expected = directRidge(z: z, y: y, prior: prior, alpha: 0.02)
        for (slot, offset) in [(0, 0), (1, f)] {
            let down = try XCTUnwrap(result.downs[slot])
            for i in 0..<f { for c in 0..<d { XCTAssertEqual(Double(down[c, i]), expected[offset + i][c], accuracy: 1e-4) } }
        }
        for c in 0..<d { XCTAssertEqual(Double(try XCTUnwrap(result.novices[2])[c]), expected[2 * f][c], accuracy: 1e-4) }
    }

    func testRefitWithHugeRidgeKeepsTheWeights() throws {
        let layer = try handLayer()
        let result = try LayerRefit(refitsDown: true, fitsNovices: true, ridge: 1e12)
            .solve(full: layer.full, compressed: layer.compressed, map: layer.map,
                   weights: [0: layer.experts[0], 1: layer.experts[2]], novices: [2: layer.noviceVector])
        XCTAssertEqual(result.downs[0]!.values, layer.experts[0].down.values, accuracy: 1e-6)
        XCTAssertEqual(result.downs[1]!.values, layer.experts[2].down.values, accuracy: 1e-6)
        XCTAssertEqual(result.novices[2]!, layer.noviceVector, accuracy: 1e-6)
    }

    // MARK: The budget search's allocation

    func testAllocationNeverExceedsTheBudgetAndIsOptimal() throws {
        var random = SeededGenerator(seed: 3)
        for trial in 0..<20 {
            // Three layers of 6 experts, at least 2 each; errors fall as counts grow.
            let errors: [[Int: Double]] = (0..<3).map { _ in
                var e = [6: 0.0], level = 0.0
                for n in stride(from: 5, through: 2, by: -1) { level += Double(abs(random.normal())); e[n] = level }
                return e
            }
            let budget = 6 + trial % 9
            let counts = try BudgetSearch.allocate(errors: errors, budget: budget)
            XCTAssertLessThanOrEqual(counts.reduce(0, +), budget)
            // Brute force over every combination.
            var best = Double.infinity
            for a in 2...6 { for b in 2...6 { for c in 2...6 where a + b + c <= budget {
                best = min(best, errors[0][a]! + errors[1][b]! + errors[2][c]!)
            } } }
            XCTAssertEqual(zip(errors, counts).reduce(0.0) { $0 + $1.0[$1.1]! }, best, accuracy: 1e-12)
        }
        XCTAssertThrowsError(try BudgetSearch.allocate(errors: [[2: 1, 3: 0], [2: 1, 3: 0]], budget: 3))
    }

    // MARK: ExpertMap

    func testPlansStoredBeforeNovicesStillDecode() throws {
        let old = #"{"slotOfExpert":[0,null,1],"slotCount":2}"#
        let map = try JSONDecoder().decode(ExpertMap.self, from: Data(old.utf8))
        XCTAssertNil(map.noviceSlotOfExpert)
        XCTAssertFalse(map.hasNovices)
        XCTAssertEqual(map.noviceSlots(for: RoutingDecision(experts: [1, 0], gates: [0.6, 0.4], scores: [0.6, 0.4])).count, 0)
        let novices = ExpertMap(slotOfExpert: [0, nil, 1], noviceSlotOfExpert: [nil, 2, nil])
        XCTAssertEqual(novices.slotCount, 3)
        XCTAssertEqual(novices.slots(for: RoutingDecision(experts: [2, 0], gates: [0.7, 0.3], scores: [0.7, 0.3])).map(\.slot), [1, 0])
        XCTAssertEqual(novices.noviceSlots(for: RoutingDecision(experts: [1, 0], gates: [0.6, 0.4], scores: [0.6, 0.4])).map(\.slot), [2])
    }
}

/// Slims with recovery on a real store (the qwen3_moe fixture).
final class RecoveryPlanTests: PlanFixtureCase {
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("recovery-tests-\(UUID().uuidString)")
        try open("qwen3_moe")
    }

    /// Squared logit distance to the full model over the calibration sequences.
    private func error(_ plan: CompressionPlan) throws -> Double {
        let full = try store.loadModel()
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        return try sequences.reduce(0.0) { acc, ids in
            acc + Double(zip(try model.logits(ids).values, try full.logits(ids).values).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) })
        }
    }

    func testAdditiveNovicesWithZeroVectorsEqualPlainPruning() throws {
        let pruned = try slim("reap25") { $0.prune = .reap; $0.keepFraction = 0.25 }
        let novices = try slim("reap25-novices") { $0.prune = .reap; $0.keepFraction = 0.25; $0.noviceFraction = 0.25 }
        XCTAssertEqual(novices.layers[0]!.expertMap.survivingExperts, pruned.layers[0]!.expertMap.survivingExperts,
                       "novices take no routing slot, so the same experts stay routable")
        /// The plan's records, but every novice a zero vector.
        struct ZeroNovices: ExpertVariantProvider {
            let store: StoreVariantProvider
            func expert(layer: Int, expert: Int, variant: UInt32) throws -> any Expert {
                let e = try store.expert(layer: layer, expert: expert, variant: variant)
                guard let novice = e as? ConstantExpert else { return e }
                return ConstantExpert(vector: novice.vector.map { _ in 0 })
            }
        }
        let description = try store.modelDescription()
        let tensors = try PlanTensorProvider(store: store, quantization: nil)
        let zeroed = try MoEModel(description: description, tensors: tensors,
                                  experts: PlanExpertSource(plan: novices, provider: ZeroNovices(store: StoreVariantProvider(store: store))),
                                  expertMaps: novices.expertMaps)
        let (plain, _) = try PlanLoader.model(plan: pruned, store: store)
        let (withNovices, _) = try PlanLoader.model(plan: novices, store: store)
        for ids in sequences {
            XCTAssertEqual(try zeroed.logits(ids).values, try plain.logits(ids).values)
        }
        XCTAssertNotEqual(try withNovices.logits(sequences[0]).values, try plain.logits(sequences[0]).values)
    }

    func testRefitRecoversAndKeepsGateAndUp() throws {
        let pruned = try slim("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }
        let refit = try slim("reap50-refit") { $0.prune = .reap; $0.keepFraction = 0.5; $0.refit = true }
        XCTAssertEqual(refit.recipe.refitRidge, 0.05)
        XCTAssertEqual(refit.layers.map { $0?.expertMap }, pruned.layers.map { $0?.expertMap }, "the refit changes weights, not routing")
        // Every kept slot is a refit variant whose gate and up projections are the imported ones, bit for bit.
        let slot = refit.layers[0]!.slots[0]
        guard case let .expert(e, variant) = slot else { return XCTFail("\(slot)") }
        XCTAssertEqual(variant, ExpertVariants.refit(plan: "reap50-refit"))
        let stored = try XCTUnwrap(store.expertRecord(ExpertKey(layer: 0, expert: e, variant: ExpertVariant(rawValue: variant))))
        let original = try XCTUnwrap(store.expertRecord(ExpertKey(layer: 0, expert: e)))
        XCTAssertEqual(stored.tensors.map(\.dtype), original.tensors.map(\.dtype))
        XCTAssertEqual(stored.payloads[0], original.payloads[0])
        XCTAssertEqual(stored.payloads[1], original.payloads[1])
        XCTAssertNotEqual(stored.payloads[2], original.payloads[2])
        // Fitted on these sequences, the refit plan is closer to the full model on them.
        XCTAssertLessThan(try error(refit), try error(pruned))
        // It exports like any pruned plan, at the same bytes (refit experts keep the imported dtype), and runs the same there.
        XCTAssertLessThanOrEqual(try exportDifference(refit), 2e-5)
        XCTAssertLessThanOrEqual(try exportDifference(pruned), 2e-5)
        func exportedBytes(_ plan: CompressionPlan) throws -> Int {
            try XCTUnwrap(FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("export-\(plan.name)/model.safetensors").path)[.size] as? Int)
        }
        XCTAssertEqual(try exportedBytes(refit), try exportedBytes(pruned))
    }

    func testQuantizationAfterRefitStartsFromTheRefitWeights() throws {
        try open("olmoe")   // experts 32 wide: whole groups of 32
        let refit = try slim("r") { $0.prune = .reap; $0.keepFraction = 0.5; $0.refit = true }
        let quantized = try slim("rq") { $0.prune = .reap; $0.keepFraction = 0.5; $0.refit = true; $0.uniformBits = 8; $0.groupSize = 32 }
        let provider = try StoreVariantProvider(store: store, precision: .float32)
        for (s, slot) in quantized.layers[0]!.slots.enumerated() {
            guard case let .expert(e, variant) = slot else { return XCTFail("\(slot)") }
            XCTAssertEqual(variant, ExpertVariants.gptq(plan: "rq", bits: 8), "quantized for this plan, not the shared RTN record")
            let q = try XCTUnwrap(provider.expert(layer: 0, expert: e, variant: variant) as? QuantizedExpert).dequantized()
            let r = try XCTUnwrap(provider.expert(layer: 0, expert: e, variant: refit.layers[0]!.slots[s].record.variant) as? FeedForward)
            let original = try Slimmer(store: store).originalExpert(layer: 0, expert: e)
            // 8-bit codes of the refit down projection: far closer to it than to the original one.
            let toRefit = maxAbsDifference(q.down.values, r.down.values), toOriginal = maxAbsDifference(q.down.values, original.down.values)
            XCTAssertLessThan(toRefit * 4, toOriginal, "slot \(s)")
        }
    }

    func testLeastSquaresNovicesRecoverMoreThanMeanNovices() throws {
        let pruned = try slim("p") { $0.prune = .reap; $0.keepFraction = 0.25 }
        let lsq = try slim("lsq") { $0.prune = .reap; $0.keepFraction = 0.25; $0.noviceFraction = 0.25; $0.noviceFit = .leastSquares }
        XCTAssertEqual(lsq.recipe.noviceFit, "lsq")
        XCTAssertLessThan(try error(lsq), try error(pruned))
    }

    func testSearchedBudgetStaysWithinBudget() throws {
        let description = try store.modelDescription()
        let total = description.moeLayerIndices.reduce(0) { $0 + description.layers[$1].moe!.expertCount }
        for keep in [0.5, 0.75] {
            let plan = try slim("search-\(keep)") { $0.prune = .reap; $0.keepFraction = keep; $0.budget = .search }
            let counts = plan.layers.compactMap { $0?.expertMap.survivingExperts.count }
            XCTAssertEqual(plan.recipe.searchedCounts, counts)
            XCTAssertLessThanOrEqual(counts.reduce(0, +), Int((Double(total) * keep).rounded()))
            for (l, n) in zip(description.moeLayerIndices, counts) { XCTAssertGreaterThanOrEqual(n, description.layers[l].moe!.topK) }
        }
        XCTAssertThrowsError(try slim("search-tiny") { $0.prune = .reap; $0.keepFraction = 0.05; $0.budget = .search }) {
            XCTAssertTrue(String(describing: $0).contains("top-k"), "\($0)")
        }
    }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy * max(1, abs(y)), file: file, line: line) }
}
