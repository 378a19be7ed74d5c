import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Plans of the gpt_oss fixture: pruning keeps biased experts and exports them in gpt-oss's
/// fused layout; the methods whose variants cannot carry biases yet are refused.
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

    func testMethodsBiasedExpertsCannotCarryAreRefusedWithTheReason() throws {
        let cases: [(String, (inout SlimOptions) -> Void, String)] = [
            ("merge", { $0.merge = .hcSMoE; $0.keepFraction = 0.5 }, "merging"),
            ("bits", { $0.averageBits = 4 }, "expert quantization"),
            ("uniform", { $0.uniformBits = 4 }, "expert quantization"),
            ("refit", { $0.prune = .reap; $0.keepFraction = 0.5; $0.refit = true }, "refit"),
        ]
        for (name, configure, method) in cases {
            XCTAssertThrowsError(try slimmed(name, configure), name) { error in
                guard case let PlanError.invalid(plan, reason) = error else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(plan, name)
                XCTAssertTrue(reason.contains(method) && reason.contains("biases"), "\(name): \(reason)")
            }
        }
    }
}
