import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Pruning inside experts (`slim --shrink`): neuron scores against hand computations, the kept
/// set, narrowing and zero padding as identities where they must be, and plans that shrink
/// (alone, with the refit, with quantization, streamed) on the qwen2_moe fixture.
final class ExpertShrinkingTests: PlanFixtureCase {
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("shrink-tests-\(UUID().uuidString)")
        try open("qwen2_moe")
    }

    /// gate = [[1, 0], [0, 1]], up = [[1, 1], [2, 0]], down = [[1, 0], [2, 3]], one token
    /// x = (1, 2) with gate 0.5: a = (silu(1)·3, silu(2)·2); ‖down[:, 0]‖² = 5, ‖down[:, 1]‖² = 9.
    func testNeuronEnergyByHand() {
        let expert = FeedForward(gate: Matrix(rows: 2, columns: 2, values: [1, 0, 0, 1]),
                                 up: Matrix(rows: 2, columns: 2, values: [1, 1, 2, 0]),
                                 down: Matrix(rows: 2, columns: 2, values: [1, 0, 2, 3]))
        let silu = { (v: Double) in v / (1 + exp(-v)) }
        let a = [silu(1) * 3, silu(2) * 2]
        let energy = ExpertShrinking.neuronEnergy(expert, x: Matrix(rows: 1, columns: 2, values: [1, 2]), gates: [0.5])
        XCTAssertEqual(energy[0], 0.25 * a[0] * a[0] * 5, accuracy: 1e-5)
        XCTAssertEqual(energy[1], 0.25 * a[1] * a[1] * 9, accuracy: 1e-5)
        // No routed token: every neuron scores zero.
        XCTAssertEqual(ExpertShrinking.neuronEnergy(expert, x: Matrix(rows: 0, columns: 2, values: []), gates: []), [0, 0])
    }

    func testKeptNeuronsPerExpertAndPerLayer() {
        // Each expert keeps its best half, in index order.
        XCTAssertEqual(ExpertShrinking.keptNeurons(scores: [[1, 5, 3, 4]], removing: 0.5, scope: .expert, granule: 1), [[1, 3]])
        // One threshold over the layer: the strong expert keeps three, the weak one its best.
        let layer: [[Double]] = [[10, 9, 1, 0.5], [2, 0.1, 0.2, 0.3]]
        XCTAssertEqual(ExpertShrinking.keptNeurons(scores: layer, removing: 0.5, scope: .layer, granule: 1), [[0, 1, 2], [0]])
        // Widths round to the granule, at least one, at most the expert.
        let wide = [(0..<16).map(Double.init)]
        XCTAssertEqual(ExpertShrinking.keptNeurons(scores: wide, removing: 0.3, scope: .expert, granule: 4), [Array(4..<16)])
        XCTAssertEqual(ExpertShrinking.keptNeurons(scores: wide, removing: 0.99, scope: .expert, granule: 4), [Array(12..<16)])
        XCTAssertEqual(ExpertShrinking.keptNeurons(scores: wide, removing: 0, scope: .layer, granule: 4), [Array(0..<16)])
        // Quantized plans keep whole groups that are whole activation blocks.
        XCTAssertEqual(ExpertShrinking.granule(intermediateSize: 256, quantizationGroup: 64), 64)
        XCTAssertEqual(ExpertShrinking.granule(intermediateSize: 384, quantizationGroup: 32), 32)
        XCTAssertEqual(ExpertShrinking.granule(intermediateSize: 256, quantizationGroup: nil), 8)
        XCTAssertEqual(ExpertShrinking.granule(intermediateSize: 20, quantizationGroup: nil), 1)
    }

    /// The case: an expert whose dropped neurons have zero output weights computes the
    /// same after shrinking (and they are the ones dropped: they score zero); padding with zero
    /// neurons changes nothing either.
    func testDroppingNeuronsWithoutOutputIsExact() {
        var random = SeededGenerator(seed: 18)
        let (d, f) = (8, 6)
        var down = random.matrix(d, f)
        for r in 0..<d { for c in [1, 4] { down.values[r * f + c] = 0 } }
        let expert = FeedForward(gate: random.matrix(f, d), up: random.matrix(f, d), down: down)
        let x = random.matrix(5, d)
        let scores = ExpertShrinking.neuronEnergy(expert, x: x, gates: [0.2, 0.4, 0.6, 0.8, 1])
        let kept = ExpertShrinking.keptNeurons(scores: [scores], removing: 2.0 / 6, scope: .expert, granule: 1)[0]
        XCTAssertEqual(kept, [0, 2, 3, 5])
        let narrow = expert.keepingNeurons(kept)
        XCTAssertEqual(narrow.intermediateSize, 4)
        XCTAssertEqual(narrow.gate.values, [0, 2, 3, 5].flatMap { Array(expert.gate.values[($0 * d)..<(($0 + 1) * d)]) })
        // The same sums less exact zeros; BLAS may group a 4-long and a 6-long dot product
        // differently, so the outputs agree to float rounding (a few ulps), not bit for bit.
        func assertSame(_ a: Matrix, _ b: Matrix, _ what: String) {
            for (u, v) in zip(a.values, b.values) { XCTAssertEqual(u, v, accuracy: 1e-6 * max(1, abs(v)), what) }
        }
        assertSame(narrow.forward(x), expert.forward(x), "narrowed")
        assertSame(narrow.paddedWithZeroNeurons(to: 9).forward(x), narrow.forward(x), "padded")
        XCTAssertEqual(expert.keepingNeurons(Array(0..<f)).forward(x).values, expert.forward(x).values)
    }

    func slim(_ name: String, _ configure: (inout SlimOptions) -> Void) throws -> (CompressionPlan, SlimResult) {
        var options = SlimOptions(name: name)
        configure(&options)
        let slimmer = try Slimmer(store: store)
        let result = try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences)
        try slimmer.commit(result)
        return (try PlanLoader.plan(named: name, in: store), result)
    }

    func testShrinkingByZeroIsTheModel() throws {
        let (plan, result) = try slim("zero") { $0.shrink = 0 }
        XCTAssertTrue(result.records.isEmpty)
        XCTAssertTrue(plan.layers.compactMap { $0 }.allSatisfy { $0.slots.allSatisfy { $0.record.variant == 0 } })
        let model = try PlanLoader.model(plan: plan, store: store).model
        let reference = try store.loadModel()
        for ids in sequences { XCTAssertEqual(try model.logits(ids), try reference.logits(ids)) }
    }

    /// A quarter of each expert's neurons go: the shrunk records hold exactly the imported
    /// rows and columns of the neurons with the highest energy, recomputed here from the
    /// tokens the full model routes to each expert; the plan runs those weights.
    func testShrunkExpertsKeepTheHighestEnergyNeuronsAsImported() throws {
        let (plan, result) = try slim("quarter") { $0.shrink = 0.25 }
        let description = try store.modelDescription()
        XCTAssertEqual(plan.recipe.expertWidths, [24, 24])
        XCTAssertEqual(result.records.count, description.moeLayerIndices.count * 8)
        XCTAssertEqual(plan.expectedExpertBytes, result.originalExpertBytes * 3 / 4)

        let routed = RoutedInputs(hiddenSize: description.hiddenSize)
        let full = try store.loadModel(precision: .float32)
        for ids in sequences { _ = try full.logits(ids, observer: routed) }
        let slimmer = try Slimmer(store: store)
        let variants = try StoreVariantProvider(store: store, precision: .float32)
        for l in description.moeLayerIndices {
            for e in 0..<8 {
                let slot = plan.layers[l]!.slots[e]
                XCTAssertEqual(slot.record.variant, ExpertVariants.shrunk(plan: "quarter"))
                let original = try slimmer.originalExpert(layer: l, expert: e)
                let stored = try XCTUnwrap(variants.expert(layer: l, expert: e, variant: slot.record.variant) as? FeedForward)
                // Energy of each neuron, in double, from the routed rows.
                let (x, gates, _) = routed.rows(layer: l, experts: [e])
                let activation = original.activation(x)
                let f = original.intermediateSize
                let energy = (0..<f).map { i -> Double in
                    let routedEnergy = (0..<x.rows).reduce(0.0) { $0 + pow(Double(gates[$1]) * Double(activation.values[$1 * f + i]), 2) }
                    let column = (0..<original.down.rows).reduce(0.0) { $0 + pow(Double(original.down.values[$1 * f + i]), 2) }
                    return routedEnergy * column
                }
                let best = Array((0..<f).sorted { energy[$0] > energy[$1] }.prefix(24)).sorted()
                XCTAssertEqual(stored.gate.values, original.keepingNeurons(best).gate.values, "layer \(l) expert \(e)")
                XCTAssertEqual(stored.down.values, original.keepingNeurons(best).down.values, "layer \(l) expert \(e)")
            }
        }
        let model = try PlanLoader.model(plan: plan, store: store, precision: .float32).model
        XCTAssertTrue(try model.logits(sequences[0]).values.allSatisfy(\.isFinite))
    }

    /// The HF export pads every expert with zero neurons to the plan's widest and says so in
    /// config.json: the exported checkpoint computes the plan; GGUF and MLX refuse with the reason.
    func testShrunkPlansExportPaddedToOneWidth() throws {
        let (plan, _) = try slim("layer-export") {
            $0.shrink = 0.5
            $0.shrinkScope = .layer
        }
        let widest = try XCTUnwrap(plan.recipe.expertWidths?.last)
        XCTAssertLessThan(try XCTUnwrap(plan.recipe.expertWidths?.first), widest, "widths vary by expert")
        let out = directory.appendingPathComponent("hf")
        _ = try PlanExporter(store: store).export(plan: plan, to: out)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any]
        XCTAssertEqual(config?["moe_intermediate_size"] as? Int, widest)
        let exported = try MoEModel(directory: out, precision: .float32)
        let planned = try PlanLoader.model(plan: plan, store: store, precision: .float32).model
        for ids in sequences.prefix(2) {
            let (a, b) = (try exported.logits(ids), try planned.logits(ids))
            for (x, y) in zip(a.values, b.values) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        }
        for attempt in [{ _ = try GGUFExporter(store: self.store).export(plan: plan, to: self.directory.appendingPathComponent("x.gguf")) },
                        { _ = try MLXExporter(store: self.store).export(plan: plan, to: self.directory.appendingPathComponent("mlx")) }] {
            XCTAssertThrowsError(try attempt()) { error in XCTAssertTrue("\(error)".contains("shrunk"), "\(error)") }
        }
    }

    /// With one threshold per layer widths differ between experts, and the layer keeps about
    /// its share of neurons; with the refit the narrowed down projections are refit.
    func testLayerScopeAndRefitCompose() throws {
        let (layerPlan, _) = try slim("layer") {
            $0.shrink = 0.5
            $0.shrinkScope = .layer
        }
        let description = try store.modelDescription()
        let variants = try StoreVariantProvider(store: store, precision: .float32)
        for l in description.moeLayerIndices {
            let widths = try layerPlan.layers[l]!.slots.map { slot -> Int in
                let expert = try variants.expert(layer: l, expert: slot.record.expert, variant: slot.record.variant)
                return (expert as? FeedForward)?.intermediateSize ?? 32
            }
            XCTAssertTrue(widths.allSatisfy { $0 % 8 == 0 && $0 >= 8 && $0 <= 32 }, "\(widths)")
            XCTAssertEqual(Double(widths.reduce(0, +)), 0.5 * 8 * 32, accuracy: 8 * 4, "layer \(l): \(widths)")
        }
        let (refitPlan, _) = try slim("refit") {
            $0.shrink = 0.5
            $0.refit = true
        }
        for l in description.moeLayerIndices {
            for slot in refitPlan.layers[l]!.slots {
                XCTAssertEqual(slot.record.variant, ExpertVariants.refit(plan: "refit"))
                let expert = try XCTUnwrap(try variants.expert(layer: l, expert: slot.record.expert, variant: slot.record.variant) as? FeedForward)
                XCTAssertEqual(expert.down.columns, 16)
            }
        }
        // The refit fits the narrowed layer's output on calibration text better than narrowing alone.
        let reference = try store.loadModel(precision: .float32)
        let evaluator = Evaluator(window: 12)
        let windows = evaluator.windows(sequences.flatMap { $0 })
        let results = try evaluator.evaluate(
            try ["refit", "half"].map { name -> EvaluationCandidate in
                let plan = name == "half" ? try slim("half") { $0.shrink = 0.5 }.0 : refitPlan
                return EvaluationCandidate(plan: name, model: try PlanLoader.model(plan: plan, store: store, precision: .float32).model, expertBytes: 0)
            }, reference: reference, windows: windows, data: "test")
        XCTAssertLessThan(results[0].meanKL, results[1].meanKL)
    }
}
