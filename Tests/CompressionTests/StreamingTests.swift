import Synchronization
import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE
@testable import Routing

/// Layer-by-layer evaluation and slimming (the modes for models bigger than memory) compute
/// exactly what the in-memory modes compute: each sequence runs through each layer on its own
/// with the same weights and kernels, so numbers and records are bit-identical.
final class StreamingTests: XCTestCase {
    var directory: URL!
    let sequences = (0..<4).map { s in (0..<24).map { (($0 + 3) * (s + 5) * 37) % 511 + 1 } }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("streaming-tests-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// A fresh store of the qwen2_moe fixture (BF16 weights with a shared expert; experts 32 wide, whole groups of 32) and its profile.
    func importedStore(_ name: String) throws -> (ExpertStore, RoutingProfile) {
        let url = directory.appendingPathComponent(name)
        _ = try StoreImporter(checkpoint: PlanFixtureCase.fixtures.appendingPathComponent("qwen2_moe"), store: url).run()
        let store = try ExpertStore(url: url, readOnly: false)
        let profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test").profile(model: store.loadModel(), sequences: sequences)
        return (store, profile)
    }

    func testStreamedEvaluationEqualsInMemory() throws {
        let (store, profile) = try importedStore("eval")
        var pruned = SlimOptions(name: "pruned")
        pruned.prune = .reap
        pruned.keepFraction = 0.5
        var quantized = pruned
        quantized.name = "quantized"
        quantized.uniformBits = 4
        quantized.groupSize = 32
        quantized.denseBits = 8   // its own dense weights and output head, read through its own runner
        let slimmer = try Slimmer(store: store)
        for options in [pruned, quantized] {
            try slimmer.commit(try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences))
        }
        let plans = try ["pruned", "quantized"].map { try PlanLoader.plan(named: $0, in: store) }
        let evaluator = Evaluator(window: 12)
        let windows = evaluator.windows(sequences.flatMap { $0 })
        for precision in WeightPrecision.allCases {
            let reference = try store.loadModel(precision: precision)
            let inMemory = try evaluator.evaluate(
                [EvaluationCandidate(plan: "full", model: reference, expertBytes: 0)]
                    + plans.map { EvaluationCandidate(plan: $0.name, model: try PlanLoader.model(plan: $0, store: store, precision: precision).model,
                                                      expertBytes: $0.expectedExpertBytes) },
                reference: reference, windows: windows, data: "test")
            let runner = LayerwiseRunner(description: try store.modelDescription(), tensors: try StoreTensorProvider(store: store), precision: precision)
            let streamed = try evaluator.evaluateStreaming(
                [try .full(store: store, precision: precision)] + plans.map { try .plan($0, store: store, precision: precision) },
                reference: try .full(store: store, precision: precision), runner: runner, windows: windows, data: "test")
            XCTAssertEqual(streamed.count, 3)
            for (a, b) in zip(inMemory, streamed) {
                XCTAssertEqual(a.plan, b.plan)
                XCTAssertEqual(a.tokens, b.tokens)
                XCTAssertEqual(a.perplexity, b.perplexity, "\(a.plan) at \(precision): perplexity")
                XCTAssertEqual(a.referencePerplexity, b.referencePerplexity)
                XCTAssertEqual(a.meanKL, b.meanKL, "\(a.plan) at \(precision): KL")
                XCTAssertEqual(a.topOneAgreement, b.topOneAgreement)
            }
            XCTAssertEqual(streamed[0].meanKL, 0, "the full model against itself")
            XCTAssertGreaterThan(streamed[2].meanKL, 0, "a pruned, quantized plan differs from the full model")
        }
    }

    /// GPTQ (calibration replay), mixed widths (two replays when streaming), the refit
    /// (written layer by layer) and shrinking (with and without the refit) give the same plan and the same records, byte for byte,
    /// streamed and in memory.
    func testStreamedSlimEqualsInMemory() throws {
        let (memoryStore, profile) = try importedStore("memory")
        let (streamStore, _) = try importedStore("streamed")
        var gptq = SlimOptions(name: "gptq")
        gptq.prune = .reap
        gptq.keepFraction = 0.5
        gptq.uniformBits = 4
        gptq.groupSize = 32
        gptq.gptq = true
        var mixed = SlimOptions(name: "mixed")
        mixed.averageBits = 3
        mixed.groupSize = 32
        var refit = SlimOptions(name: "refit")
        refit.prune = .reap
        refit.keepFraction = 0.5
        refit.refit = true
        var shrink = SlimOptions(name: "shrink")
        shrink.shrink = 0.4
        shrink.shrinkScope = .layer
        var shrinkRefit = SlimOptions(name: "shrink-refit")
        shrinkRefit.prune = .reap
        shrinkRefit.keepFraction = 0.5
        shrinkRefit.shrink = 0.25
        shrinkRefit.refit = true
        for options in [gptq, mixed, refit, shrink, shrinkRefit] {
            let inMemory = try Slimmer(store: memoryStore)
            try inMemory.commit(try inMemory.slim(profile: profile, profileName: "test", options: options, calibration: sequences))
            var streamedOptions = options
            var written = 0
            let counter = Mutex(0)
            streamedOptions.layerRecordSink = { [streamStore] records in
                counter.withLock { $0 += records.count }
                try streamStore.putExpertRecords(records)
            }
            let streaming = try Slimmer(store: streamStore)
            let result = try streaming.slim(profile: profile, profileName: "test", options: streamedOptions, calibration: sequences)
            written = counter.withLock { $0 }
            XCTAssertGreaterThan(written, 0, "\(options.name): records were written layer by layer")
            XCTAssertTrue(result.records.isEmpty, "\(options.name): nothing quantized is held for the commit")
            try streaming.commit(result)
            let a = try PlanLoader.plan(named: options.name, in: memoryStore), b = try PlanLoader.plan(named: options.name, in: streamStore)
            XCTAssertEqual(a, b, options.name)
            for (l, layer) in a.layers.enumerated() {
                for slot in layer?.slots ?? [] {
                    let key = ExpertKey(layer: l, expert: slot.record.expert, variant: ExpertVariant(rawValue: slot.record.variant))
                    XCTAssertEqual(try memoryStore.expertRecord(key), try streamStore.expertRecord(key), "\(options.name): \(key)")
                }
            }
        }
    }
}
