import Compression
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MoE
import MoEServer
import XCTest

/// `--auto`: PreMoe-style choice between the python and german plans by routing signature,
/// with experts loaded on demand into a bounded LRU cache.
final class AutoPlanTests: XCTestCase {
    /// Held-out prompts (never seen by the profiles) go to their own domain's plan.
    func testAutoPicksTheDomainPlanForHeldOutPrompts() throws {
        let fixture = try ServeFixture.shared()
        let plans = try ServeFixture.plans.map { try PlanLoader.plan(named: $0, in: fixture.store) }
        let selector = try PlanSelector(store: fixture.store, plans: plans)
        XCTAssertEqual(selector.signatures.map(\.profile), ["python", "german"])
        XCTAssertEqual(selector.signatures.map { $0.vector.count }, [32, 32])
        for signature in selector.signatures {
            XCTAssertEqual(signature.vector.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-9)
        }
        var correct = 0, total = 0
        var perDomain = [String: (Int, Int)]()
        for (domain, plan) in [("python", "python-50"), ("german", "german-50")] {
            for text in try ServeFixture.heldout(domain) {
                // A prompt as a user would send it: the start of the document. (Only its first
                // characters are encoded: whole documents would dominate the test's time.)
                let tokens = Array(fixture.tokenizer.encode(String(text.prefix(8 * AutoPlanTests.promptTokens))).prefix(AutoPlanTests.promptTokens))
                guard tokens.count >= 8 else { continue }
                let chosen = try selector.choose(for: tokens).plan
                total += 1
                if chosen == plan { correct += 1 }
                perDomain[domain, default: (0, 0)].0 += chosen == plan ? 1 : 0
                perDomain[domain, default: (0, 0)].1 += 1
            }
        }
        let accuracy = Double(correct) / Double(total)
        print("TAER accuracy on held-out prompts (first \(AutoPlanTests.promptTokens) tokens): \(correct)/\(total) = \(String(format: "%.1f", 100 * accuracy))%; "
              + perDomain.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.0)/\($0.value.1)" }.joined(separator: ", "))
        XCTAssertGreaterThan(total, 400)
        XCTAssertGreaterThanOrEqual(accuracy, 0.9)
        // Each domain on its own, too. (Python's misses are mostly chunks of codec tables,
        // `0x00e3: 0x03ae,  # GREEK SMALL LETTER ETA`, that route like prose.)
        for (_, counts) in perDomain { XCTAssertGreaterThanOrEqual(Double(counts.0) / Double(counts.1), 0.9) }
    }

    static let promptTokens = 128

    /// Over HTTP: the answer names the chosen plan, equals that plan's own greedy output, and
    /// the experts come through the LRU cache, which stays within its bound.
    func testAutoServerReportsThePlanAndBoundsTheCache() async throws {
        let fixture = try ServeFixture.shared()
        let description = try fixture.store.modelDescription()
        let moe = try XCTUnwrap(description.layers[description.moeLayerIndices[0]].moe)
        // Experts stay BF16 in the cache (the server's default `--expert-precision stored`).
        let expertBytes = 3 * description.hiddenSize * moe.expertIntermediateSize * 2
        // Room for 40 experts: less than one plan's half of 128, so serving both plans must evict.
        let limit = 40 * expertBytes
        let (server, running, client) = try await fixture.startServer(
            ServerConfiguration(plans: ServeFixture.plans, auto: true, maxExpertMemory: limit))
        defer { withExtendedLifetime(server) {} }
        XCTAssertEqual(server.engine.residentExpertBytes, 0, "nothing is loaded before the first request")

        let python = "import numpy as np\n\ndef load(path):\n    with open(path) as f:\n        return [line.strip() for line in f]\n"
        let german = "Die Datei enthält eine Liste der Pakete, die bei der Installation automatisch ausgewählt werden."
        for (prompt, plan) in [(python, "python-50"), (german, "german-50"), (python, "python-50")] {
            let (status, body) = try await client.post("/v1/completions", json: ["model": "auto", "prompt": prompt, "max_tokens": 5])
            XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
            let answer = try object(body)
            XCTAssertEqual(answer["model"] as? String, plan)
            let info = try XCTUnwrap(answer["moekit"] as? [String: Any])
            XCTAssertEqual(info["plan"] as? String, plan)
            XCTAssertEqual(info["auto"] as? Bool, true)
            // The cached experts compute exactly what the plan loaded on its own does.
            let text = (answer["choices"] as? [[String: Any]])?.first?["text"] as? String
            XCTAssertEqual(text, try fixture.reference(plan: plan, prompt: prompt, maxTokens: 5).text)
        }
        let cache = try XCTUnwrap(server.engine.cache?.statistics)
        XCTAssertGreaterThan(cache.misses, 0)
        XCTAssertGreaterThan(cache.hits, 0)
        XCTAssertGreaterThan(cache.evictions, 0)
        XCTAssertLessThanOrEqual(cache.residentBytes, limit)
        XCTAssertEqual(cache.residentBytes, cache.entries * expertBytes)

        let (_, metricsBody) = try await client.get("/metrics")
        let text = String(decoding: metricsBody, as: UTF8.self)
        XCTAssertEqual(metricSample(text, "moekit_plan_requests_total{plan=\"python-50\",auto=\"true\"}"), 2, text)
        XCTAssertEqual(metricSample(text, "moekit_plan_requests_total{plan=\"german-50\",auto=\"true\"}"), 1, text)
        XCTAssertEqual(metricSample(text, "moekit_expert_cache_misses_total"), Double(cache.misses), text)
        XCTAssertEqual(metricSample(text, "moekit_expert_cache_limit_bytes"), Double(limit), text)

        // A plan may still be named explicitly.
        let (status, body) = try await client.post("/v1/completions", json: ["model": "german-50", "prompt": python, "max_tokens": 1])
        XCTAssertEqual(status, 200)
        XCTAssertEqual((try object(body)["moekit"] as? [String: Any])?["auto"] as? Bool, false)
        await running.stop()
    }
}
