import Compression
import ExpertStore
import Foundation
import MoE
@testable import MoEServer
import XCTest

/// Plans run through an expert cache far smaller than their experts (what a plan larger than
/// memory does): the same greedy tokens as with every expert loaded, and a cache that
/// really missed, evicted and stayed within its bound.
final class CachedPlanTests: XCTestCase {
    let prompts = ["def fibonacci(n):\n    ", "Die Datei enthält eine Liste der Pakete"]
    static let maxTokens = 16

    /// An original expert as the cache holds it (BF16 kept as stored), from the model's shapes.
    func expertBytes(_ store: ExpertStore) throws -> Int {
        let description = try store.modelDescription()
        let moe = try XCTUnwrap(description.layers[description.moeLayerIndices[0]].moe)
        return 3 * description.hiddenSize * moe.expertIntermediateSize * 2
    }

    func greedy(_ model: MoEModel, _ prompt: String, tokenizer: Tokenizer) throws -> [Int] {
        try Generator(model: model).generate(prompt: tokenizer.encode(prompt), maxTokens: Self.maxTokens,
                                             stopTokens: Set(model.description.eosTokenIDs))
    }

    func testPlanThroughACacheOfOneExpertGeneratesTheSameTokens() throws {
        let fixture = try ServeFixture.shared()
        let one = try expertBytes(fixture.store)
        let plan = try PlanLoader.plan(named: "python-50", in: fixture.store)
        let roomy = AvailableMemory.Budget(bytes: 1 << 40, source: "test")
        let cached = try PlanModel(plan: plan, store: fixture.store, precision: .stored, maxExpertMemory: one, budget: roomy)
        XCTAssertEqual(cached.residency.mode, .cached(limitBytes: one))
        let cache = try XCTUnwrap(cached.cache)
        XCTAssertLessThan(one * 10, plan.expectedExpertBytes, "the bound is far below the plan's experts")
        for prompt in prompts {
            let expected = try fixture.reference(plan: "python-50", prompt: prompt, maxTokens: Self.maxTokens).tokens
            XCTAssertFalse(expected.isEmpty)
            XCTAssertEqual(try greedy(cached.model, prompt, tokenizer: fixture.tokenizer), expected, prompt)
        }
        let stats = cache.statistics
        XCTAssertGreaterThan(stats.misses, 0)
        XCTAssertGreaterThan(stats.evictions, 0)
        XCTAssertLessThanOrEqual(stats.residentBytes, one + one)
        // Every entry is one BF16 expert; with a bound of one, the newest alone stays.
        XCTAssertEqual(stats.entries, 1)
        XCTAssertEqual(stats.residentBytes, one)
        XCTAssertEqual(stats.misses - stats.evictions, stats.entries)

        // Without a bound and with room to spare, the plan is loaded at start as before.
        let resident = try PlanModel(plan: plan, store: fixture.store, precision: .stored, maxExpertMemory: nil, budget: roomy)
        XCTAssertEqual(resident.residency.mode, .resident)
        XCTAssertNil(resident.cache)
    }

    func testFullModelThroughACacheGeneratesTheSameTokens() throws {
        let fixture = try ServeFixture.shared()
        let store = fixture.store
        let one = try expertBytes(store)
        let full = try CompressionPlan.named(nil, in: store)
        let description = try store.modelDescription()
        let allExperts = description.moeLayerIndices.reduce(0) { $0 + description.layers[$1].moe!.expertCount }
        XCTAssertTrue(full.keepsEveryExpert)
        XCTAssertEqual(full.expectedExpertBytes, allExperts * one)
        // Room for three experts, fewer than one layer's top-k: evictions inside every token.
        let limit = 3 * one
        let cached = try PlanModel(plan: full, store: store, precision: .stored, maxExpertMemory: limit,
                                   budget: AvailableMemory.Budget(bytes: 1 << 40, source: "test"))
        let reference = try store.loadModel(experts: StoreExpertSource(store: store, precision: .stored))
        for prompt in prompts {
            XCTAssertEqual(try greedy(cached.model, prompt, tokenizer: fixture.tokenizer),
                           try greedy(reference, prompt, tokenizer: fixture.tokenizer), prompt)
        }
        let stats = try XCTUnwrap(cached.cache).statistics
        XCTAssertGreaterThan(stats.misses, allExperts / 2)
        XCTAssertGreaterThan(stats.evictions, 0)
        XCTAssertLessThanOrEqual(stats.residentBytes, limit + one)
        XCTAssertEqual(stats.residentBytes, stats.entries * one)
    }

    func testFootprintOfPlansFromTheStore() throws {
        let fixture = try ServeFixture.shared()
        let store = fixture.store
        let one = try expertBytes(store)
        let description = try store.modelDescription()
        let moe = try XCTUnwrap(description.layers[description.moeLayerIndices[0]].moe)
        let plan = try PlanLoader.plan(named: "python-50", in: store)
        let stored = try ExpertFootprint(store: store, plans: [plan], precision: .stored)
        XCTAssertEqual(stored.expertBytes, plan.slotCount * one)
        XCTAssertEqual(stored.minimumCacheBytes, moe.topK * one)
        // Widened to f32, original experts take twice their stored bytes.
        XCTAssertEqual(try ExpertFootprint(store: store, plans: [plan], precision: .float32).expertBytes, plan.slotCount * one * 2)
        // Plans loaded at start each hold their own experts.
        let both = try ExpertFootprint(store: store, plans: try ServeFixture.plans.map { try PlanLoader.plan(named: $0, in: store) }, precision: .stored)
        XCTAssertEqual(both.expertBytes, try ServeFixture.plans.reduce(0) { $0 + (try PlanLoader.plan(named: $1, in: store)).slotCount * one })
        // The dense part is what the plan's loaded model holds (BF16 kept as stored), once per plan.
        let (model, _) = try PlanLoader.model(plan: plan, store: store)
        XCTAssertEqual(stored.denseBytes, model.denseByteCount)
        XCTAssertEqual(both.denseBytes, ServeFixture.plans.count * model.denseByteCount)
    }

    /// `serve` without `--auto`: with a bound, or when the plan does not fit the memory
    /// available, the fixed plan is served through the cache, answers as the plan loaded on
    /// its own does, and /metrics reports the cache.
    func testServerRunsAFixedPlanThroughTheCache() async throws {
        let fixture = try ServeFixture.shared()
        let one = try expertBytes(fixture.store)
        let prompt = prompts[0]
        let expected = try fixture.reference(plan: "python-50", prompt: prompt, maxTokens: Self.maxTokens)

        // A bound of one expert, as `--max-expert-memory` gives it.
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"], maxExpertMemory: one))
        defer { withExtendedLifetime(server) {} }
        XCTAssertEqual(server.engine.residency.mode, .cached(limitBytes: one))
        XCTAssertEqual(server.engine.residentExpertBytes, 0, "nothing is loaded before the first request")
        let (status, body) = try await client.post("/v1/completions", json: ["prompt": prompt, "max_tokens": Self.maxTokens])
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        XCTAssertEqual((try object(body)["choices"] as? [[String: Any]])?.first?["text"] as? String, expected.text)
        let stats = try XCTUnwrap(server.engine.cache?.statistics)
        XCTAssertGreaterThan(stats.misses, 0)
        XCTAssertGreaterThan(stats.evictions, 0)
        XCTAssertLessThanOrEqual(stats.residentBytes, one + one)
        let (_, metricsBody) = try await client.get("/metrics")
        let text = String(decoding: metricsBody, as: UTF8.self)
        for (sample, value) in [("moekit_expert_cache_hits_total", stats.hits), ("moekit_expert_cache_misses_total", stats.misses),
                                ("moekit_expert_cache_evictions_total", stats.evictions), ("moekit_expert_cache_entries", stats.entries),
                                ("moekit_expert_cache_limit_bytes", one), ("moekit_resident_expert_bytes", stats.residentBytes)] {
            XCTAssertEqual(metricSample(text, sample), Double(value), "\(sample) in\n\(text)")
        }
        // Not an --auto server: no "auto" model.
        let (_, models) = try await client.get("/v1/models")
        XCTAssertFalse(String(decoding: models, as: UTF8.self).contains("\"auto\""))
        await running.stop()

        // No bound, but too little memory for the plan: the cache is sized automatically.
        let footprint = try ExpertFootprint(store: fixture.store, plans: [PlanLoader.plan(named: "python-50", in: fixture.store)], precision: .stored)
        let tight = AvailableMemory.Budget(bytes: footprint.denseBytes, source: "test")
        let engine = try ServingEngine(store: fixture.store, configuration: ServerConfiguration(plans: ["python-50"], memoryBudget: tight))
        XCTAssertEqual(engine.residency.mode, .cached(limitBytes: footprint.minimumCacheBytes))
        let prepared = try engine.prepare(GenerationRequest.completion(json: JSONSerialization.data(withJSONObject: ["prompt": prompt, "max_tokens": Self.maxTokens])),
                                          defaultMaxTokens: nil)
        XCTAssertEqual(try engine.generate(prepared).tokens, expected.tokens)
        XCTAssertGreaterThan(try XCTUnwrap(engine.cache).statistics.evictions, 0)
    }
}
