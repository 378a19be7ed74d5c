import Compression
import Foundation
import MoE
@testable import MoEServer
import XCTest

/// OpenAI request fields: refused ones name themselves in a 400, implemented ones do what
/// their definition says.
final class ServerOpenAIFieldTests: XCTestCase {
    let prompt = "def fibonacci(n):\n    "

    func failure(_ json: String, chat: Bool = false) -> APIError? {
        do {
            if chat { _ = try GenerationRequest.chat(json: Data(json.utf8), template: .plain) } else { _ = try GenerationRequest.completion(json: Data(json.utf8)) }
            return nil
        } catch { return error as? APIError }
    }

    func testUnimplementedFieldsAreRefusedByName() {
        let messages = #""messages": [{"role": "user", "content": "hi"}]"#
        let refused: [(json: String, chat: Bool, param: String)] = [
            (#"{"prompt": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}"#, false, "tools"),
            (#"{\#(messages), "tools": []}"#, true, "tools"),
            (#"{\#(messages), "tool_choice": "auto"}"#, true, "tool_choice"),
            (#"{\#(messages), "functions": [{"name": "f"}]}"#, true, "functions"),
            (#"{\#(messages), "function_call": "auto"}"#, true, "function_call"),
            (#"{\#(messages), "parallel_tool_calls": true}"#, true, "parallel_tool_calls"),
            (#"{\#(messages), "response_format": {"type": "json_object"}}"#, true, "response_format"),
            (#"{\#(messages), "response_format": {"type": "json_schema", "json_schema": {}}}"#, true, "response_format"),
            (#"{\#(messages), "logit_bias": {"15": 5}}"#, true, "logit_bias"),
            (#"{\#(messages), "modalities": ["text", "audio"]}"#, true, "modalities"),
            (#"{\#(messages), "n": 3}"#, true, "n"),
            (#"{\#(messages), "logprobs": true, "stream": true}"#, true, "logprobs"),
            (#"{\#(messages), "top_logprobs": 2}"#, true, "top_logprobs"),
            (#"{"prompt": "x", "echo": true}"#, false, "echo"),
            (#"{"prompt": "x", "best_of": 2}"#, false, "best_of"),
            (#"{"prompt": "x", "suffix": "return x"}"#, false, "suffix"),
            (#"{"prompt": "x", "logprobs": 21}"#, false, "logprobs"),
            (#"{"prompt": "x", "top_k": -2}"#, false, "top_k"),
            (#"{"prompt": "x", "min_p": 1.5}"#, false, "min_p"),
            (#"{"prompt": "x", "repetition_penalty": 0}"#, false, "repetition_penalty"),
            (#"{"prompt": "x", "presence_penalty": 2.5}"#, false, "presence_penalty"),
            (#"{"prompt": "x", "frequency_penalty": -3}"#, false, "frequency_penalty"),
            (#"{"prompt": "x", "top_k": "many"}"#, false, "top_k"),
        ]
        for bad in refused {
            let error = failure(bad.json, chat: bad.chat)
            XCTAssertEqual(error?.status.code, 400, bad.json)
            XCTAssertEqual(error?.param, bad.param, bad.json)
        }
        // Harmless or neutral values are accepted.
        for fine in [#"{"prompt": "x", "user": "u", "metadata": {"a": "b"}, "store": false, "echo": false, "best_of": 1, "suffix": "", "logit_bias": {}}"#,
                     #"{"prompt": "x", "response_format": {"type": "text"}, "tools": null, "logprobs": false}"#] {
            XCTAssertNil(failure(fine), fine)
        }
        XCTAssertNil(failure(#"{\#(messages), "modalities": ["text"], "logprobs": false}"#, chat: true))
    }

    func testNewSamplingFieldsReachTheSampler() throws {
        let request = try GenerationRequest.completion(json: Data(#"{"prompt": "x", "temperature": 0.5, "top_k": 7, "min_p": 0.1, "repetition_penalty": 1.3, "presence_penalty": 0.4, "frequency_penalty": -0.2, "seed": 9, "stream": true, "stream_options": {"include_usage": true}}"#.utf8))
        XCTAssertEqual(request.sampling, SamplingParameters(temperature: 0.5, topK: 7, minP: 0.1, repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: -0.2, seed: 9))
        XCTAssertTrue(request.includeUsage)
        // vLLM's -1 means no top-k.
        XCTAssertEqual(try GenerationRequest.completion(json: Data(#"{"prompt": "x", "top_k": -1}"#.utf8)).sampling.topK, 0)
        XCTAssertEqual(try GenerationRequest.completion(json: Data(#"{"prompt": "x", "logprobs": 3}"#.utf8)).logprobs, 3)
        XCTAssertEqual(try GenerationRequest.chat(json: Data(#"{"messages": [{"role": "user", "content": "a"}], "logprobs": true, "top_logprobs": 4}"#.utf8), template: .plain).logprobs, 4)
    }

    func testDefaultsComeFromGenerationConfig() throws {
        let sampled = SamplingDefaults(generationConfig: Data(#"{"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20}"#.utf8))
        XCTAssertEqual(sampled, SamplingDefaults(temperature: 0.6, topP: 0.95, topK: 20))
        // Hugging Face's rule: without do_sample, greedy whatever the temperature.
        XCTAssertEqual(SamplingDefaults(generationConfig: Data(#"{"temperature": 0.6, "top_p": 0.95}"#.utf8)), SamplingDefaults())
        XCTAssertEqual(SamplingDefaults(generationConfig: Data(#"{"do_sample": true}"#.utf8)), SamplingDefaults(temperature: 1))
        XCTAssertEqual(SamplingDefaults(generationConfig: nil), SamplingDefaults())
        let request = try GenerationRequest.completion(json: Data(#"{"prompt": "x", "top_p": 0.5}"#.utf8), defaults: sampled)
        XCTAssertEqual(request.sampling, SamplingParameters(temperature: 0.6, topP: 0.5, topK: 20))
        // The bundled model's generation_config.json says do_sample: false, so the server is greedy by default.
        let fixture = try ServeFixture.shared()
        let engine = try ServingEngine(store: fixture.store, configuration: ServerConfiguration(plans: ["python-50"]))
        XCTAssertEqual(engine.samplingDefaults, SamplingDefaults())
    }

    func completionText(_ client: Client, _ json: [String: Any]) async throws -> String {
        let (status, body) = try await client.post("/v1/completions", json: json)
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        return try XCTUnwrap((try object(body)["choices"] as? [[String: Any]])?.first?["text"] as? String)
    }

    func testTopKOneAndMinPOneEqualGreedyAndSeedsReproduce() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        let greedy = try fixture.reference(plan: "python-50", prompt: prompt, maxTokens: 10).text
        // Hot sampling, but only the likeliest token survives: top_k 1, or min_p 1 (p ≥ 1 × the largest).
        for seed in [1, 2, 3] {
            let topK = try await completionText(client, ["prompt": prompt, "max_tokens": 10, "temperature": 1.8, "top_k": 1, "seed": seed])
            XCTAssertEqual(topK, greedy)
            let minP = try await completionText(client, ["prompt": prompt, "max_tokens": 10, "temperature": 1.8, "min_p": 1.0, "seed": seed])
            XCTAssertEqual(minP, greedy)
        }
        // A hot sample with a seed is the same each time; over several seeds some answer differs from greedy.
        var samples = [String]()
        for seed in [11, 12, 13, 14] {
            let first = try await completionText(client, ["prompt": prompt, "max_tokens": 10, "temperature": 1.5, "seed": seed])
            let again = try await completionText(client, ["prompt": prompt, "max_tokens": 10, "temperature": 1.5, "seed": seed])
            XCTAssertEqual(first, again, "seed \(seed)")
            samples.append(first)
        }
        XCTAssertTrue(samples.contains { $0 != greedy })
        await running.stop()
    }

    /// The reference: the plan's model run on the prompt plus the tokens before each position,
    /// its last row put through a log-softmax computed here in double precision.
    func referenceLogSoftmax(_ fixture: ServeFixture, prompt tokens: [Int], answer: [Int]) throws -> [[Double]] {
        let model = try PlanLoader.model(plan: PlanLoader.plan(named: "python-50", in: fixture.store), store: fixture.store, precision: .stored).model
        return try (0..<answer.count).map { i in
            var cache = model.makeCache()
            let logits = try model.forward(tokens + answer[..<i], cache: &cache)
            let row = logits.values[((logits.rows - 1) * logits.columns)...].map(Double.init)
            let top = row.max()!
            let logSum = log(row.reduce(0) { $0 + exp($1 - top) }) + top
            return row.map { $0 - logSum }
        }
    }

    func testLogprobsEqualTheLogSoftmaxOfTheModelsLogits() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        let expected = try fixture.reference(plan: "python-50", prompt: prompt, maxTokens: 5)
        let reference = try referenceLogSoftmax(fixture, prompt: fixture.tokenizer.encode(prompt), answer: expected.tokens)

        let (status, body) = try await client.post("/v1/completions", json: ["prompt": prompt, "max_tokens": 5, "logprobs": 3])
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        let logprobs = try XCTUnwrap((try object(body)["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])
        let tokens = try XCTUnwrap(logprobs["tokens"] as? [String])
        let values = try XCTUnwrap(logprobs["token_logprobs"] as? [Double])
        let tops = try XCTUnwrap(logprobs["top_logprobs"] as? [[String: Double]])
        let offsets = try XCTUnwrap(logprobs["text_offset"] as? [Int])
        XCTAssertEqual(tokens, expected.tokens.map { fixture.tokenizer.decode([$0]) })
        XCTAssertEqual(tokens.joined(), expected.text)
        XCTAssertEqual(offsets, tokens.indices.map { tokens[..<$0].joined().count })
        for (i, token) in expected.tokens.enumerated() {
            XCTAssertEqual(values[i], reference[i][token], accuracy: 1e-4, "token \(i)")
            // Greedy: the chosen token is the likeliest, and the three alternatives are the three best.
            let best = reference[i].indices.sorted { reference[i][$0] > reference[i][$1] }.prefix(3)
            XCTAssertEqual(tops[i].count, Set(best.map { fixture.tokenizer.decode([$0]) }).count)
            for index in best { XCTAssertEqual(tops[i][fixture.tokenizer.decode([index])] ?? 0, reference[i][index], accuracy: 1e-4) }
        }

        let (chatStatus, chatBody) = try await client.post("/v1/chat/completions", json: [
            "messages": [["role": "user", "content": "Sort a list."]], "max_tokens": 3, "logprobs": true, "top_logprobs": 2,
        ])
        XCTAssertEqual(chatStatus, 200, String(decoding: chatBody, as: UTF8.self))
        let choice = try XCTUnwrap((try object(chatBody)["choices"] as? [[String: Any]])?.first)
        let content = try XCTUnwrap((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        let rendered = "<|im_start|>user\nSort a list.<|im_end|>\n<|im_start|>assistant\n"
        let endOfTurn = try XCTUnwrap(fixture.tokenizer.tokenID("<|im_end|>"))
        let chatExpected = try fixture.reference(plan: "python-50", prompt: rendered, maxTokens: 3, extraStops: [endOfTurn])
        let chatReference = try referenceLogSoftmax(fixture, prompt: fixture.tokenizer.encode(rendered), answer: chatExpected.tokens)
        XCTAssertEqual(content.count, chatExpected.tokens.count)
        for (i, entry) in content.enumerated() {
            let token = chatExpected.tokens[i]
            XCTAssertEqual(entry["token"] as? String, fixture.tokenizer.decode([token]))
            XCTAssertEqual(entry["bytes"] as? [Int], fixture.tokenizer.bytes([token]).map(Int.init))
            XCTAssertEqual(try XCTUnwrap(entry["logprob"] as? Double), chatReference[i][token], accuracy: 1e-4)
            XCTAssertEqual((entry["top_logprobs"] as? [[String: Any]])?.count, 2)
        }
        await running.stop()
    }

    func testUsageChunkOnlyWithIncludeUsage() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        for chat in [false, true] {
            let path = chat ? "/v1/chat/completions" : "/v1/completions"
            var json: [String: Any] = chat ? ["messages": [["role": "user", "content": "hi"]]] : ["prompt": prompt]
            json["max_tokens"] = 4
            json["stream"] = true
            let (_, plain) = try await client.post(path, json: json)
            let plainChunks = try events(plain).dropLast().map { try object(Data($0.utf8)) }
            XCTAssertTrue(plainChunks.allSatisfy { $0["usage"] == nil }, path)

            json["stream_options"] = ["include_usage": true]
            let (_, counted) = try await client.post(path, json: json)
            let payloads = events(counted)
            XCTAssertEqual(payloads.last, "[DONE]")
            let chunks = try payloads.dropLast().map { try object(Data($0.utf8)) }
            let last = try XCTUnwrap(chunks.last)
            XCTAssertEqual((last["choices"] as? [Any])?.count, 0, path)
            let usage = try XCTUnwrap(last["usage"] as? [String: Int], path)
            XCTAssertTrue(chunks.dropLast().allSatisfy { $0["usage"] == nil }, path)
            // The same (greedy) request answered whole reports the same counts.
            json["stream"] = false
            json["stream_options"] = nil
            let (_, whole) = try await client.post(path, json: json)
            XCTAssertEqual(usage, try object(whole)["usage"] as? [String: Int], path)
            XCTAssertGreaterThan(usage["completion_tokens"] ?? 0, 0)
            XCTAssertEqual(usage["total_tokens"], (usage["prompt_tokens"] ?? 0) + (usage["completion_tokens"] ?? 0))
        }
        await running.stop()
    }

    func testARefusedFieldIsA400OverHTTP() async throws {
        let fixture = try ServeFixture.shared()
        let (server, running, client) = try await fixture.startServer(ServerConfiguration(plans: ["python-50"]))
        defer { withExtendedLifetime(server) {} }
        let (status, body) = try await client.post("/v1/chat/completions", json: [
            "messages": [["role": "user", "content": "hi"]], "tools": [["type": "function", "function": ["name": "f"]]],
        ])
        XCTAssertEqual(status, 400)
        let error = try XCTUnwrap(try object(body)["error"] as? [String: Any])
        XCTAssertEqual(error["param"] as? String, "tools")
        XCTAssertEqual(error["code"] as? String, "unsupported_parameter")
        await running.stop()
    }
}
