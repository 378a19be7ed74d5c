import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// A request's own skip rule (`SkipOverride`, the server's `"moekit": {"skip": …}`) computes
/// what a plan carrying that rule computes, turns a plan's rule off with `.none`, and applies
/// per sequence inside a batch.
final class SkipOverrideTests: PlanFixtureCase {
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("skip-override-tests-\(UUID().uuidString)")
        try open("qwen2_moe")
    }

    func plan(_ name: String, skip: SkipSpecification) throws -> MoEModel {
        var options = SlimOptions(name: name)
        options.skip = skip
        let slimmer = try Slimmer(store: store)
        try slimmer.commit(try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences))
        return try PlanLoader.model(plan: PlanLoader.plan(named: name, in: store), store: store).model
    }

    func logits(_ model: MoEModel, _ ids: [Int], skip: SkipOverride?) throws -> Matrix {
        var cache = model.makeCache()
        return try model.forward(ids, cache: &cache, skip: skip)
    }

    func testOverrideEqualsAPlanWithTheRuleAndNoneTurnsItOff() throws {
        let rule = ExpertSkip.ser(minimum: 1, threshold: 0.6)
        let skipping = try plan("ser", skip: .ser(minimum: 1, threshold: 0.6))
        let full = try store.loadModel()
        let layers = try store.modelDescription().moeLayerIndices
        let override = SkipOverride(layers: Dictionary(uniqueKeysWithValues: layers.map { ($0, rule) }))
        var differs = false
        for ids in sequences {
            let planned = try skipping.logits(ids)
            XCTAssertEqual(try logits(full, ids, skip: override), planned)
            XCTAssertEqual(try logits(skipping, ids, skip: SkipOverride.none), try full.logits(ids))
            // A rule that never fires (t = 0: every chosen expert has p > 0) changes nothing.
            let never = SkipOverride(layers: Dictionary(uniqueKeysWithValues: layers.map { ($0, ExpertSkip.ser(minimum: 1, threshold: 0)) }))
            XCTAssertEqual(try logits(full, ids, skip: never), try full.logits(ids))
            let unskipped = try full.logits(ids)
            differs = differs || planned != unskipped
        }
        XCTAssertTrue(differs, "the rule skips some expert on these tokens")
    }

    /// Two sequences in one batch, one with its own rule: each gets what it gets alone.
    func testOverrideAppliesPerSequenceInABatch() throws {
        let full = try store.loadModel()
        let layers = try store.modelDescription().moeLayerIndices
        let override = SkipOverride(layers: Dictionary(uniqueKeysWithValues: layers.map { ($0, ExpertSkip.topP(p: 0.5)) }))
        var caches = [full.makeCache(), full.makeCache()]
        let batched = try full.forward(batch: [sequences[0], sequences[1]], caches: &caches, skips: [override, nil])
        let alone = [try logits(full, sequences[0], skip: override), try full.logits(sequences[1])]
        for (a, b) in zip(batched, alone) {
            XCTAssertEqual(a.rows, b.rows)
            for (x, y) in zip(a.values, b.values) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        }
        XCTAssertNotEqual(alone[0], try full.logits(sequences[0]))
    }
}
