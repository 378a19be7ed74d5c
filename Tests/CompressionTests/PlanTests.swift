import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Plans on a real store built from the qwen3_moe fixture: what the forward pass runs for a
/// plan equals what a physically sliced checkpoint (the export) computes.
final class PlanTests: PlanFixtureCase {
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("plan-tests-\(UUID().uuidString)")
        try open("qwen3_moe")
    }

    func testFullPlanIsTheModel() throws {
        let plan = CompressionPlan.full(description: try store.modelDescription(), fingerprint: try store.fingerprint()!, expertBytes: 0)
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        XCTAssertEqual(try model.logits(sequences[0]), try store.loadModel().logits(sequences[0]))
    }

    func testPrunedPlanEqualsSlicedCheckpoint() throws {
        let plan = try slim("reap50") { $0.prune = .reap; $0.keepFraction = 0.5 }
        XCTAssertEqual(plan.layers.compactMap { $0?.slots.count }, [4, 4])
        // The kept experts are the four with the highest REAP score in each layer (super experts aside).
        let criteria = profile.criteria()
        for l in 0..<2 {
            let kept = Set(plan.layers[l]!.expertMap.survivingExperts)
            let protected = Set(plan.recipe.protectedSuperExperts.filter { $0.layer == l }.map(\.expert))
            let byScore = (0..<8).sorted { criteria[l][$0].reap > criteria[l][$1].reap }
            XCTAssertEqual(kept, protected.union(byScore.filter { !protected.contains($0) }.prefix(4 - protected.count)))
        }
        XCTAssertLessThanOrEqual(try exportDifference(plan), 2e-5)
    }

    func testMergedPlanEqualsExportedCopies() throws {
        for method in SlimOptions.MergeMethod.allCases {
            let plan = try slim("merge-\(method.rawValue)") { $0.merge = method; $0.keepFraction = 0.5 }
            XCTAssertEqual(plan.layers.compactMap { $0?.slots.count }, [4, 4], method.rawValue)
            XCTAssertEqual(plan.layers[0]?.expertMap.survivingExperts.count, 8, "merging keeps every router row")
            // The fixture is F16 and merged weights (f32 averages) are exported in F16, rounded
            // to nearest (relative error up to 2^-11 per weight), so the logits move by that
            // rounding; an f32 export would have matched within 2e-5.
            XCTAssertLessThanOrEqual(try exportDifference(plan), 3e-3, method.rawValue)
        }
    }

    func testQuantizedPlans() throws {
        // OLMoE's fixture has experts 32 wide, whole groups of 32 (qwen3_moe's are 48).
        try open("olmoe")
        let mixed = try slim("mixed3") { $0.averageBits = 3; $0.groupSize = 32 }
        let uniform = try slim("uniform3") { $0.uniformBits = 3; $0.groupSize = 32 }
        XCTAssertLessThanOrEqual(try exportDifference(mixed), 1e-4)
        // Both spend 3 code bits per weight on average (the knapsack may use less).
        func averageBits(_ plan: CompressionPlan) -> Double {
            let bits = plan.layers.compactMap { $0 }.flatMap(\.slots).map { Double(($0.record.variant >> 16) & 0xFF) }
            return bits.reduce(0, +) / Double(bits.count)
        }
        XCTAssertLessThanOrEqual(averageBits(mixed), 3)
        XCTAssertEqual(averageBits(uniform), 3)
        // Mixed precision minimises the measured error under the same budget, so on the
        // calibration tokens it is at least as close to the full model as uniform 3-bit.
        let full = try store.loadModel()
        func error(_ plan: CompressionPlan) throws -> Double {
            let (model, _) = try PlanLoader.model(plan: plan, store: store)
            return try sequences.reduce(0.0) { acc, ids in
                acc + Double(zip(try model.logits(ids).values, try full.logits(ids).values).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) })
            }
        }
        XCTAssertLessThanOrEqual(try error(mixed), try error(uniform) * 1.05)
    }

    func testNovicesAddTheMeanOutputAndCannotBeExported() throws {
        let pruned = try slim("reap25") { $0.prune = .reap; $0.keepFraction = 0.25 }
        let novices = try slim("reap25-novices") { $0.prune = .reap; $0.keepFraction = 0.25; $0.noviceFraction = 0.25 }
        XCTAssertEqual(novices.layers[0]!.slots.count, 4)
        let novice = try XCTUnwrap(novices.layers[0]!.slots.first { if case .novice = $0 { return true } else { return false } })
        // The novice's stored vector is the profile's mean routed output of that expert.
        let expert = novice.experts[0]
        let source = try PlanExpertSource(plan: novices, provider: StoreVariantProvider(store: store))
        let constant = try XCTUnwrap(source.expert(layer: 0, index: novices.layers[0]!.expertMap.noviceSlotOfExpert![expert]!) as? ConstantExpert)
        for (a, b) in zip(constant.vector, profile.layers[0]!.routedOutputMean(expert)) { XCTAssertEqual(Double(a), b, accuracy: 1e-6) }
        let (a, _) = try PlanLoader.model(plan: pruned, store: store)
        let (b, _) = try PlanLoader.model(plan: novices, store: store)
        XCTAssertNotEqual(try a.logits(sequences[0]), try b.logits(sequences[0]))
        XCTAssertThrowsError(try PlanExporter(store: store).export(plan: novices, to: directory.appendingPathComponent("x"))) {
            XCTAssertTrue(String(describing: $0).contains("novices"))
        }
    }

    func testPlanNamingMissingExpertsIsRejected() throws {
        var plan = try slim("reap50b") { $0.prune = .reap; $0.keepFraction = 0.5 }
        plan.layers[1]!.slots[0] = .expert(9, variant: 0)
        XCTAssertThrowsError(try plan.validate(against: store.modelDescription(), fingerprint: store.fingerprint())) {
            XCTAssertEqual(String(describing: $0), "plan 'reap50b' does not fit the model: layer 1 names expert 9, which does not exist (the layer has 8)")
        }
        plan = try slim("reap50c") { $0.prune = .reap; $0.keepFraction = 0.5 }
        plan.modelFingerprint = "other"
        XCTAssertThrowsError(try plan.validate(against: store.modelDescription(), fingerprint: store.fingerprint())) {
            XCTAssertTrue(String(describing: $0).contains("was made for model other"))
        }
        XCTAssertThrowsError(try PlanLoader.plan(named: "nope", in: store)) {
            XCTAssertTrue(String(describing: $0).contains("no plan named 'nope'"))
        }
    }

    func testGlobalBudgetCannotBeExported() throws {
        let plan = try slim("global") { $0.prune = .frequency; $0.keepFraction = 0.5; $0.budget = .global }
        let counts = Set(plan.layers.compactMap { $0?.slots.count })
        if counts.count > 1 {
            XCTAssertThrowsError(try PlanExporter(store: store).export(plan: plan, to: directory.appendingPathComponent("g"))) {
                XCTAssertTrue(String(describing: $0).contains("different numbers of experts"))
            }
        } else {
            XCTAssertLessThanOrEqual(try exportDifference(plan), 2e-5)
        }
    }
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// A store made from a fixture, profiled, with helpers to slim plans and export them.
class PlanFixtureCase: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    var directory: URL!
    var store: ExpertStore!
    var profile: RoutingProfile!
    var sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 511 + 1 } }

    /// Imports a fixture into a fresh store and profiles it.
    func open(_ fixture: String) throws {
        store = nil
        let storeURL = directory.appendingPathComponent("store-\(fixture)")
        _ = try StoreImporter(checkpoint: Self.fixtures.appendingPathComponent(fixture), store: storeURL).run()
        store = try ExpertStore(url: storeURL, readOnly: false)
        profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test")
            .profile(model: store.loadModel(), sequences: sequences)
    }

    override func tearDownWithError() throws {
        store = nil
        try? FileManager.default.removeItem(at: directory)
    }

    func slim(_ name: String, _ configure: (inout SlimOptions) -> Void) throws -> CompressionPlan {
        var options = SlimOptions(name: name)
        configure(&options)
        let slimmer = try Slimmer(store: store)
        let result = try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences)
        try slimmer.commit(result)
        return try PlanLoader.plan(named: name, in: store)
    }

    /// Max |Δ| between the plan run by MoEKit and its exported checkpoint run from disk.
    /// The plan's logits against its export's, with f32 activations on both sides (the
    /// integer kernels' 8-bit activations are a runtime approximation, not the weights).
    func exportDifference(_ plan: CompressionPlan) throws -> Float {
        QuantizedMatrix.usesIntegerKernels = false
        defer { QuantizedMatrix.usesIntegerKernels = true }
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        let out = directory.appendingPathComponent("export-\(plan.name)")
        _ = try PlanExporter(store: store).export(plan: plan, to: out)
        let exported = try MoEModel(directory: out)
        XCTAssertEqual(exported.description.layers[0].moe?.expertCount, plan.layers[0]?.expertMap.survivingExperts.count)
        var worst: Float = 0
        for ids in sequences {
            worst = max(worst, maxAbsDifference(try model.logits(ids).values, try exported.logits(ids).values))
        }
        return worst
    }
}
