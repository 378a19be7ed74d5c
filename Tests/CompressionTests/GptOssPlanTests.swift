import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Plans of the gpt_oss fixture: pruning keeps biased experts and exports them in gpt-oss's
/// fused layout; merged variants keep the members' weighted-mean biases; refit is refused.
final class GptOssPlanTests: XCTestCase {
    var directory: URL!
    var store: ExpertStore!
    var profile: RoutingProfile!
    /// Within the fixture's vocabulary of 128.
    let sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 127 + 1 } }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gptoss-plan-tests-\(UUID().uuidString)")
        let storeURL = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: PlanFixtureCase.fixtures.appendingPathComponent("gpt_oss"), store: storeURL).run()
        store = try ExpertStore(url: storeURL, readOnly: false)
        profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
    }

    override func tearDownWithError() throws {
        store = nil
        try? FileManager.default.removeItem(at: directory)
    }

    func slimmed(_ name: String, _ configure: (inout SlimOptions) -> Void) throws -> SlimResult {
        var options = SlimOptions(name: name)
        configure(&options)
        return try Slimmer(store: store).slim(profile: profile, profileName: "test", options: options, calibration: sequences)
    }

    func testPrunedPlanExportsInTheFusedLayoutWithTheSameLogits() throws {
        let result = try slimmed("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }
        try Slimmer(store: store).commit(result)
        let plan = try PlanLoader.plan(named: "reap50", in: store)
        let kept = plan.layers.compactMap { $0?.expertMap.survivingExperts }
        XCTAssertEqual(kept.map(\.count), [2, 2])
        let out = directory.appendingPathComponent("export")
        _ = try PlanExporter(store: store).export(plan: plan, to: out)

        // The files hold gpt-oss's own tensors, sliced to the kept experts.
        let stored = try CheckpointDirectory(url: out, derivations: [])
        XCTAssertEqual(try stored.shape("model.layers.1.mlp.experts.gate_up_proj"), [2, 32, 32])
        XCTAssertEqual(try stored.shape("model.layers.1.mlp.experts.down_proj"), [2, 16, 32])
        XCTAssertEqual(try stored.shape("model.layers.1.mlp.router.bias"), [2])
        XCTAssertFalse(stored.storedTensorNames.contains { $0.contains(".experts.0.") })
        // Router bias rows are the kept experts' entries of the original.
        let original = try CheckpointDirectory(url: PlanFixtureCase.fixtures.appendingPathComponent("gpt_oss"))
        XCTAssertEqual(try stored.vector("model.layers.1.mlp.router.bias", count: 2),
                       kept[1].map { (try? original.vector("model.layers.1.mlp.router.bias", count: 4)[$0]) ?? .nan })
        // And the exported checkpoint computes what MoEKit computes running the plan.
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        let exported = try MoEModel(directory: out)
        XCTAssertEqual(exported.description.layers[0].moe?.expertCount, 2)
        for ids in sequences {
            XCTAssertLessThanOrEqual(maxAbsDifference(try model.logits(ids).values, try exported.logits(ids).values), 1e-5)
        }
    }

    func testRefitIsRefusedWithTheReason() throws {
        XCTAssertThrowsError(try slimmed("refit") { $0.prune = .reap; $0.keepFraction = 0.5; $0.refit = true }) { error in
            guard case let PlanError.invalid(plan, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(plan, "refit")
            XCTAssertTrue(reason.contains("refit") && reason.contains("biases") && reason.contains("intercept"), reason)
        }
    }

    func testMergedPlanKeepsTheMembersWeightedMeanBiasesAndRuns() throws {
        let result = try slimmed("merge") { $0.merge = .hcSMoE; $0.keepFraction = 0.5 }
        XCTAssertGreaterThan(result.mergedGroupCount, 0)
        try Slimmer(store: store).commit(result)
        let plan = try PlanLoader.plan(named: "merge", in: store)
        let original = try CheckpointDirectory(url: PlanFixtureCase.fixtures.appendingPathComponent("gpt_oss"))
        let names = try store.modelDescription().names
        var checked = 0
        for l in [0, 1] {
            for case let .merged(members, weights, variant) in plan.layers[l]!.slots {
                let record = try XCTUnwrap(try store.expertRecord(ExpertKey(layer: l, expert: members[0], variant: ExpertVariant(rawValue: variant))))
                XCTAssertEqual(record.tensors.count, 6)
                for (p, projection) in Projection.allCases.enumerated() {
                    let count = projection == .down ? 32 : 16
                    // The checkpoint's biases (BF16, read by the checkpoint reader), averaged with the plan's weights.
                    let memberBiases = try members.map { try original.vector(names.expertBias(l, $0, projection), count: count) }
                    let expected = (0..<count).map { i in Float(zip(memberBiases, weights).reduce(0.0) { $0 + Double($1.0[i]) * $1.1 }) }
                    let stored = record.payloads[3 + p].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                    XCTAssertLessThanOrEqual(maxAbsDifference(stored, expected), 1e-6, "layer \(l) \(projection)")
                }
                checked += 1
            }
        }
        XCTAssertEqual(checked, result.mergedGroupCount)
        // The plan runs as MoEKit runs merged slots: its logits are finite and differ from the full model's.
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        let logits = try model.logits(sequences[0]).values
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        XCTAssertGreaterThan(maxAbsDifference(logits, try store.loadModel().logits(sequences[0]).values), 0)
    }

    func testMergedPlanExportsInTheFusedLayoutAsTheMergedWeightsInBF16() throws {
        let result = try slimmed("merge") { $0.merge = .hcSMoE; $0.keepFraction = 0.5 }
        try Slimmer(store: store).commit(result)
        let plan = try PlanLoader.plan(named: "merge", in: store)
        let out = directory.appendingPathComponent("export")
        _ = try PlanExporter(store: store).export(plan: plan, to: out)
        let exported = try CheckpointDirectory(url: out)   // per-expert names derived from the fused tensors
        let names = try store.modelDescription().names
        let provider = try StoreVariantProvider(store: store, precision: .float32)
        var mergedMembers = 0
        for l in [0, 1] {
            let layer = plan.layers[l]!
            for (k, e) in layer.expertMap.survivingExperts.enumerated() {
                let record = layer.slots[layer.expertMap.slotOfExpert[e]!].record
                guard record.variant != 0 else { continue }
                let merged = try XCTUnwrap(try provider.expert(layer: l, expert: record.expert, variant: record.variant) as? FeedForward)
                mergedMembers += 1
                // Each value is the merged f32 value rounded to BF16: within half a BF16 ulp (2⁻⁸ relative).
                for (p, projection) in Projection.allCases.enumerated() {
                    let weight = [merged.gate, merged.up, merged.down][p]
                    let written = try exported.matrix(names.expert(l, k, projection), shape: [weight.rows, weight.columns]).values
                    let bias = merged.biases!.all[p]
                    let writtenBias = try exported.vector(names.expertBias(l, k, projection), count: bias.count)
                    for (a, b) in zip(written + writtenBias, weight.values + bias) {
                        XCTAssertLessThanOrEqual(abs(a - b), abs(b) / 256 + 1e-30, "layer \(l) slot \(k) \(projection)")
                    }
                }
            }
        }
        XCTAssertGreaterThan(mergedMembers, 1)
        // The exported checkpoint runs the merged experts: its logits follow the plan's up to that rounding.
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        let reloaded = try MoEModel(directory: out)
        for ids in sequences {
            XCTAssertLessThanOrEqual(maxAbsDifference(try model.logits(ids).values, try reloaded.logits(ids).values), 0.05)
        }
    }

    func testExpertQuantizationOfTheFixtureNamesTheGroupItCannotFill() throws {
        // The fixture's experts are 16 wide: their down projections cannot form groups of 32.
        XCTAssertThrowsError(try slimmed("uniform") { $0.uniformBits = 8; $0.groupSize = 32 }) { error in
            guard case QuantizationError.columnsNotDivisibleByGroupSize(16, 32) = error else { return XCTFail("\(error)") }
        }
    }
}
