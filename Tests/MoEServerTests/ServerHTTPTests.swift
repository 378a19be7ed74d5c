import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MoE
import MoEServer
import XCTest

/// The server against a real HTTP client on loopback, serving one plan.
final class ServerHTTPTests: XCTestCase {
    let prompt = "def fibonacci(n):\n    "

    func testGreedyCompletionEqualsGeneratorOutput() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        let expected = try fixture.reference(plan: "python-50", prompt: prompt, maxTokens: 12)

        let (status, body) = try await client.post("/v1/completions", json: ["model": "python-50", "prompt": prompt, "max_tokens": 12, "temperature": 0])
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        let answer = try object(body)
        XCTAssertEqual(answer["object"] as? String, "text_completion")
        XCTAssertEqual(answer["model"] as? String, "python-50")
        XCTAssertEqual((answer["moekit"] as? [String: Any])?["plan"] as? String, "python-50")
        let choice = try XCTUnwrap((answer["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual(choice["text"] as? String, expected.text)
        XCTAssertFalse(expected.text.isEmpty)
        XCTAssertEqual(choice["finish_reason"] as? String, expected.tokens.count == 12 ? "length" : "stop")
        let usage = try XCTUnwrap(answer["usage"] as? [String: Int])
        XCTAssertEqual(usage["completion_tokens"], expected.tokens.count)
        XCTAssertEqual(usage["prompt_tokens"], fixture.tokenizer.encode(prompt).count)

        // The same answer streamed: chunks that add up to the same text, then [DONE].
        let (streamStatus, streamBody) = try await client.post("/v1/completions", json: ["model": "python-50", "prompt": prompt, "max_tokens": 12, "stream": true])
        XCTAssertEqual(streamStatus, 200)
        let payloads = events(streamBody)
        XCTAssertEqual(payloads.last, "[DONE]")
        let chunks = try payloads.dropLast().map { try object(Data($0.utf8)) }
        let streamed = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined()
        XCTAssertEqual(streamed, expected.text)
        XCTAssertGreaterThan(chunks.count, 3)
        XCTAssertEqual((chunks.last?["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String, choice["finish_reason"] as? String)
        await running.stop()
    }

    func testChatUsesTheStoresChatMLTemplate() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        XCTAssertEqual(server.engine.chatTemplate.kind, .model)
        XCTAssertEqual(server.engine.chatTemplate.origin, "tokenizer_config.json chat_template")
        XCTAssertEqual(server.engine.chatTemplate.endOfTurn, "<|im_end|>")
        let rendered = "<|im_start|>system\nYou write Python.<|im_end|>\n<|im_start|>user\nSort a list.<|im_end|>\n<|im_start|>assistant\n"
        let endOfTurn = try XCTUnwrap(fixture.tokenizer.tokenID("<|im_end|>"))
        let expected = try fixture.reference(plan: "python-50", prompt: rendered, maxTokens: 10, extraStops: [endOfTurn])

        let (status, body) = try await client.post("/v1/chat/completions", json: [
            "model": "python-50", "max_tokens": 10,
            "messages": [["role": "system", "content": "You write Python."], ["role": "user", "content": "Sort a list."]],
        ])
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        let answer = try object(body)
        XCTAssertEqual(answer["object"] as? String, "chat.completion")
        let message = try XCTUnwrap((answer["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])
        XCTAssertEqual(message["role"] as? String, "assistant")
        XCTAssertEqual(message["content"] as? String, expected.text.components(separatedBy: "<|im_end|>")[0])

        let (_, streamBody) = try await client.post("/v1/chat/completions", json: [
            "model": "python-50", "max_tokens": 10, "stream": true,
            "messages": [["role": "system", "content": "You write Python."], ["role": "user", "content": "Sort a list."]],
        ])
        let chunks = try events(streamBody).dropLast().map { try object(Data($0.utf8)) }
        XCTAssertEqual(chunks.first?["object"] as? String, "chat.completion.chunk")
        let deltas = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any] }
        XCTAssertEqual(deltas.first?["role"] as? String, "assistant")
        XCTAssertEqual(deltas.compactMap { $0["content"] as? String }.joined(), message["content"] as? String)
        await running.stop()
    }

    func testSixteenConcurrentRequestsAreAllAnsweredCorrectly() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"], maxConcurrency: 4))
        defer { withExtendedLifetime(server) {} }
        let prompts = (0..<16).map { "def function_\($0)(value):\n    return value" + String(repeating: " +", count: $0 % 4) }
        let expected = try prompts.map { try fixture.reference(plan: "python-50", prompt: $0, maxTokens: 6).text }

        let answers = try await withThrowingTaskGroup(of: (Int, Int, String?).self) { group in
            for (i, prompt) in prompts.enumerated() {
                group.addTask {
                    let (status, body) = try await client.post("/v1/completions", json: ["model": "python-50", "prompt": prompt, "max_tokens": 6])
                    let text = ((try? object(body))?["choices"] as? [[String: Any]])?.first?["text"] as? String
                    return (i, status, text)
                }
            }
            var all = [(Int, Int, String?)]()
            for try await answer in group { all.append(answer) }
            return all.sorted { $0.0 < $1.0 }
        }
        XCTAssertEqual(answers.map(\.1), Array(repeating: 200, count: 16))
        XCTAssertEqual(answers.map(\.2), expected)
        XCTAssertEqual(server.metrics.requestCount(endpoint: "/v1/completions", status: 200), 16)
        // Requests in flight together shared forward passes, never more than --max-concurrency.
        let batches = server.engine.batchStatistics
        XCTAssertGreaterThan(batches.largestBatch, 1)
        XCTAssertLessThanOrEqual(batches.largestBatch, 4)
        XCTAssertLessThan(batches.steps, batches.sequenceSteps)
        let (_, metricsBody) = try await client.get("/metrics")
        XCTAssertEqual(metricSample(String(decoding: metricsBody, as: UTF8.self), "moekit_batch_largest"), Double(batches.largestBatch))
        await running.stop()
    }

    func testBadRequestsGetTheirStatusAndTheServerKeepsServing() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"], maxBodyBytes: 64 * 1024))
        defer { withExtendedLifetime(server) {} }
        let context = server.engine.description.maxPositionEmbeddings
        let tooLong = String(repeating: "alpha beta gamma ", count: context)
        let cases: [(name: String, path: String, body: Data, status: Int, code: String?, param: String?)] = [
            ("malformed JSON", "/v1/completions", Data("{\"prompt\": ".utf8), 400, "invalid_json", nil),
            ("not an object", "/v1/completions", Data("[1, 2]".utf8), 400, "invalid_json", nil),
            ("negative max_tokens", "/v1/completions", try JSONSerialization.data(withJSONObject: ["prompt": "x", "max_tokens": -1]), 400, "invalid_value", "max_tokens"),
            ("negative temperature", "/v1/completions", try JSONSerialization.data(withJSONObject: ["prompt": "x", "temperature": -0.5]), 400, "invalid_value", "temperature"),
            ("prompt of the wrong type", "/v1/completions", try JSONSerialization.data(withJSONObject: ["prompt": 7]), 400, "invalid_value", "prompt"),
            ("no messages", "/v1/chat/completions", try JSONSerialization.data(withJSONObject: ["messages": [] as [Any]]), 400, "invalid_value", "messages"),
            ("unknown plan", "/v1/completions", try JSONSerialization.data(withJSONObject: ["model": "no-such-plan", "prompt": "x"]), 404, "model_not_found", "model"),
            ("plan in the store but not served", "/v1/completions", try JSONSerialization.data(withJSONObject: ["model": "german-50", "prompt": "x"]), 404, "model_not_found", "model"),
            ("oversized body", "/v1/completions", Data(("{\"prompt\": \"" + String(repeating: "a", count: 100 * 1024) + "\"}").utf8), 413, "request_too_large", nil),
            ("prompt longer than the context", "/v1/completions", try JSONSerialization.data(withJSONObject: ["prompt": tooLong]), 422, "context_length_exceeded", "prompt"),
            ("unknown endpoint", "/v1/engines", Data("{}".utf8), 404, "unknown_url", nil),
        ]
        for bad in cases {
            let (status, body) = try await client.post(bad.path, body: bad.body)
            XCTAssertEqual(status, bad.status, "\(bad.name): \(String(decoding: body, as: UTF8.self))")
            let error = try XCTUnwrap(try object(body)["error"] as? [String: Any], bad.name)
            XCTAssertEqual(error["code"] as? String, bad.code, bad.name)
            XCTAssertEqual(error["param"] as? String, bad.param, bad.name)
            XCTAssertFalse((error["message"] as? String ?? "").isEmpty, bad.name)
            // Still serving: health and a real completion.
            let (healthStatus, _) = try await client.get("/health")
            XCTAssertEqual(healthStatus, 200, "after \(bad.name)")
            let (okStatus, okBody) = try await client.post("/v1/completions", json: ["prompt": "import os", "max_tokens": 2])
            XCTAssertEqual(okStatus, 200, "after \(bad.name): \(String(decoding: okBody, as: UTF8.self))")
        }
        // A streamed request that fails its checks also gets its status, not a broken stream.
        let (streamStatus, _) = try await client.post("/v1/completions", json: ["prompt": tooLong, "stream": true])
        XCTAssertEqual(streamStatus, 422)
        XCTAssertEqual(server.metrics.requestCount(endpoint: "/v1/completions", status: 400), 5)
        XCTAssertEqual(server.metrics.requestCount(endpoint: "/v1/completions", status: 422), 2)
        await running.stop()
    }

    func testModelsHealthAndMetrics() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        let (status, body) = try await client.get("/v1/models")
        XCTAssertEqual(status, 200)
        let list = try object(body)
        XCTAssertEqual(list["object"] as? String, "list")
        let models = try XCTUnwrap(list["data"] as? [[String: Any]])
        // Only what is served (german-50 is in the store but not loaded), with the context length.
        XCTAssertEqual(models.map { $0["id"] as? String }, ["python-50"])
        XCTAssertEqual(models.map { $0["object"] as? String }, ["model"])
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: ServeFixture.checkpoint.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(models.first?["max_model_len"] as? Int, try XCTUnwrap(config["max_position_embeddings"] as? Int))

        let (healthStatus, health) = try await client.get("/health")
        XCTAssertEqual(healthStatus, 200)
        XCTAssertEqual(try object(health)["status"] as? String, "ok")

        _ = try await client.post("/v1/completions", json: ["prompt": "import sys", "max_tokens": 3])
        let (metricsStatus, metricsBody) = try await client.get("/metrics")
        XCTAssertEqual(metricsStatus, 200)
        let text = String(decoding: metricsBody, as: UTF8.self)
        // Exactly the plan's experts are resident, about half of all experts, each at its stored
        // BF16 size (the default `--expert-precision stored`), so the plan's stored size.
        let plan = try XCTUnwrap(server.engine.plans["python-50"])
        let description = server.engine.description
        let moe = try XCTUnwrap(description.layers[description.moeLayerIndices[0]].moe)
        let expertBytes = 3 * description.hiddenSize * moe.expertIntermediateSize * 2
        let allExperts = description.moeLayerIndices.count * moe.expertCount
        XCTAssertGreaterThanOrEqual(plan.plan.slotCount, allExperts / 2)
        XCTAssertLessThan(plan.plan.slotCount, allExperts * 5 / 8)
        XCTAssertEqual(server.engine.residentExpertBytes, plan.plan.slotCount * expertBytes)
        XCTAssertEqual(server.engine.residentExpertBytes, plan.plan.expectedExpertBytes)
        XCTAssertEqual(metricSample(text, "moekit_resident_expert_bytes"), Double(plan.plan.slotCount * expertBytes), text)
        XCTAssertEqual(metricSample(text, "moekit_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), 1, text)
        XCTAssertEqual(metricSample(text, "moekit_requests_total{endpoint=\"/v1/models\",status=\"200\"}"), 1, text)
        XCTAssertEqual(metricSample(text, "moekit_generated_tokens_total{plan=\"python-50\"}"), 3, text)
        XCTAssertEqual(metricSample(text, "moekit_plan_requests_total{plan=\"python-50\",auto=\"false\"}"), 1, text)
        XCTAssertEqual(metricSample(text, "moekit_request_duration_seconds_bucket{le=\"+Inf\"}"), 3, text)
        XCTAssertTrue(text.contains("# TYPE moekit_request_duration_seconds histogram\n"), text)
        // One generation of 3 tokens: one queue wait, one first token, two gaps between tokens;
        // the first token comes after the wait, and the gaps add up to no more than the whole.
        for name in ["queue_wait", "time_to_first_token", "inter_token_latency"] {
            XCTAssertTrue(text.contains("# TYPE moekit_\(name)_seconds histogram\n"), text)
        }
        XCTAssertEqual(metricSample(text, "moekit_queue_wait_seconds_count"), 1, text)
        XCTAssertEqual(metricSample(text, "moekit_time_to_first_token_seconds_count"), 1, text)
        XCTAssertEqual(metricSample(text, "moekit_inter_token_latency_seconds_count"), 2, text)
        let wait = try XCTUnwrap(metricSample(text, "moekit_queue_wait_seconds_sum"))
        let firstToken = try XCTUnwrap(metricSample(text, "moekit_time_to_first_token_seconds_sum"))
        let gaps = try XCTUnwrap(metricSample(text, "moekit_inter_token_latency_seconds_sum"))
        let whole = try XCTUnwrap(metricSample(text, "moekit_request_duration_seconds_sum"))
        XCTAssertGreaterThanOrEqual(wait, 0)
        XCTAssertGreaterThan(firstToken, wait)
        XCTAssertLessThanOrEqual(firstToken + gaps, whole, text)
        // The plan fits in memory and no bound was given: loaded at start, no cache to report.
        XCTAssertEqual(server.engine.residency.mode, .resident)
        XCTAssertFalse(text.contains("moekit_expert_cache_"), text)
        await running.stop()
    }

    func testUnknownPlanIsRefused() throws {
        let fixture = try ServeFixture.shared()
        XCTAssertThrowsError(try ServingEngine(store: fixture.store, configuration: ServerConfiguration(plans: ["no-such-plan"])))
    }
}
