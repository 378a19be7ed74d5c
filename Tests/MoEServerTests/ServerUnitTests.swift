import Foundation
import MoE
@testable import MoEServer
import Synchronization
import XCTest

/// The server's parts that need no model: request checks, stop strings, the LRU cache, templates.
final class ServerUnitTests: XCTestCase {
    func testStopStringsCutTheTextEvenWhenSplitAcrossPieces() {
        var filter = StopSequenceFilter(stops: ["\n\n", "END"])
        XCTAssertEqual(filter.append("hello E"), "hello ")  // "E" may begin "END": held back
        XCTAssertEqual(filter.append("N"), "")
        XCTAssertEqual(filter.append("x world"), "ENx world")
        XCTAssertEqual(filter.append("\n"), "")
        XCTAssertEqual(filter.append("\nmore"), "")
        XCTAssertTrue(filter.stopped)
        XCTAssertEqual(filter.flush(), "")

        var open = StopSequenceFilter(stops: ["STOP"])
        XCTAssertEqual(open.append("abc ST"), "abc ")
        XCTAssertEqual(open.flush(), "ST")
    }

    func testCacheEvictsTheLeastRecentlyUsedExpert() throws {
        let cache = ExpertCache(limitBytes: 3 * 16)  // three experts of four floats
        func key(_ e: Int) -> ExpertCache.Key { ExpertCache.Key(layer: 0, expert: e, variant: 0) }
        func load(_ e: Int) throws -> any Expert { try cache.expert(key(e)) { ConstantExpert(vector: [Float](repeating: Float(e), count: 4)) } }
        for e in 0..<3 { _ = try load(e) }
        _ = try load(0)            // 0 is now the most recent; 1 the least
        _ = try load(3)            // evicts 1
        XCTAssertTrue(cache.contains(key(0)))
        XCTAssertFalse(cache.contains(key(1)))
        XCTAssertTrue(cache.contains(key(2)))
        XCTAssertTrue(cache.contains(key(3)))
        let stats = cache.statistics
        XCTAssertEqual(stats.hits, 1)
        XCTAssertEqual(stats.misses, 4)
        XCTAssertEqual(stats.evictions, 1)
        XCTAssertEqual(stats.residentBytes, 48)
        XCTAssertEqual((try load(3) as? ConstantExpert)?.vector, [3, 3, 3, 3])
    }

    /// Three experts of 16 bytes (four floats) under a bound of two: each new one evicts
    /// whichever of the others was used longest ago.
    func testCacheOfTwoEvictsInLeastRecentlyUsedOrder() throws {
        let cache = ExpertCache(limitBytes: 2 * 16)
        func key(_ e: Int) -> ExpertCache.Key { ExpertCache.Key(layer: 1, expert: e, variant: 0) }
        var loads = [Int]()
        func use(_ e: Int) throws -> Float {
            let expert = try cache.expert(key(e)) {
                loads.append(e)
                return ConstantExpert(vector: [Float](repeating: Float(e), count: 4))
            }
            return try XCTUnwrap(expert as? ConstantExpert).vector[0]
        }
        func held() -> [Int] { (0..<3).filter { cache.contains(key($0)) } }

        XCTAssertEqual(try use(0), 0)
        XCTAssertEqual(try use(1), 1)
        XCTAssertEqual(held(), [0, 1])
        XCTAssertEqual(try use(0), 0)  // hit; 1 is now the least recent
        XCTAssertEqual(try use(2), 2)  // evicts 1
        XCTAssertEqual(held(), [0, 2])
        XCTAssertEqual(try use(1), 1)  // miss: 0 (used before 2) goes
        XCTAssertEqual(held(), [1, 2])
        XCTAssertEqual(try use(2), 2)  // hit
        XCTAssertEqual(try use(0), 0)  // miss: 1 goes
        XCTAssertEqual(held(), [0, 2])
        XCTAssertEqual(loads, [0, 1, 2, 1, 0])
        XCTAssertEqual(cache.statistics, ExpertCache.Statistics(hits: 2, misses: 5, evictions: 3, residentBytes: 32, entries: 2, limitBytes: 32))
        XCTAssertEqual(try XCTUnwrap(cache.statistics.hitRate), 2.0 / 7.0, accuracy: 1e-12)
    }

    /// Many threads at once: every look-up is counted once as a hit or a miss, every expert
    /// comes back with its own weights, and the bound holds when they are done.
    func testCacheUnderConcurrentUse() throws {
        let cache = ExpertCache(limitBytes: 5 * 16)
        let lookups = 4000
        let wrong = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: lookups) { i in
            let e = (i * 7919) % 12
            let expert = try? cache.expert(ExpertCache.Key(layer: 0, expert: e, variant: 0)) {
                ConstantExpert(vector: [Float](repeating: Float(e), count: 4))
            }
            if (expert as? ConstantExpert)?.vector != [Float](repeating: Float(e), count: 4) { wrong.withLock { $0 += 1 } }
        }
        let stats = cache.statistics
        XCTAssertEqual(wrong.withLock { $0 }, 0)
        XCTAssertEqual(stats.hits + stats.misses, lookups)
        XCTAssertEqual(stats.misses - stats.evictions, stats.entries)
        XCTAssertLessThanOrEqual(stats.residentBytes, 5 * 16)
        XCTAssertEqual(stats.residentBytes, stats.entries * 16)
    }

    func testRequestChecks() throws {
        let ok = try GenerationRequest.completion(json: Data(#"{"model": "p", "prompt": ["hi"], "max_tokens": 3, "temperature": 0.7, "top_p": 0.9, "seed": 5, "stop": "x", "user": "ignored"}"#.utf8))
        XCTAssertEqual(ok.model, "p")
        XCTAssertEqual(ok.prompt, "hi")
        XCTAssertEqual(ok.maxTokens, 3)
        XCTAssertEqual(ok.sampling, SamplingParameters(temperature: 0.7, topP: 0.9, seed: 5))
        XCTAssertEqual(ok.stop, ["x"])
        XCTAssertFalse(ok.stream)

        func failure(_ json: String) -> APIError? {
            do { _ = try GenerationRequest.completion(json: Data(json.utf8)); return nil } catch { return error as? APIError }
        }
        XCTAssertEqual(failure(#"{"prompt": "x", "top_p": 0}"#)?.param, "top_p")
        XCTAssertEqual(failure(#"{"prompt": "x", "temperature": 2.5}"#)?.param, "temperature")
        XCTAssertEqual(failure(#"{"prompt": "x", "seed": -1}"#)?.param, "seed")
        XCTAssertEqual(failure(#"{"prompt": "x", "n": 2}"#)?.param, "n")
        XCTAssertEqual(failure(#"{"prompt": "x", "stop": ""}"#)?.param, "stop")
        XCTAssertEqual(failure(#"{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}"#)?.param, "stop")
        XCTAssertEqual(failure(#"{"prompt": ""}"#)?.param, "prompt")
        XCTAssertEqual(failure(#"{"max_tokens": 2}"#)?.param, "prompt")
        XCTAssertEqual(failure(#"{"prompt": ["a", "b"]}"#)?.param, "prompt")
        XCTAssertEqual(failure(#"{"prompt": "x""#)?.code, "invalid_json")
        XCTAssertEqual(failure(#"{"prompt": "x", "max_tokens": -4}"#)?.status.code, 400)

        let chat = try GenerationRequest.chat(json: Data(#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}"#.utf8), template: ChatTemplateServerTests.chatML)
        XCTAssertEqual(chat.prompt, "<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(chat.endOfTurn, "<|im_end|>")
        XCTAssertFalse(chat.addSpecialTokens)
        XCTAssertThrowsError(try GenerationRequest.chat(json: Data(#"{"messages": [{"role": "wizard", "content": "a"}]}"#.utf8), template: .plain)) {
            XCTAssertEqual(($0 as? APIError)?.param, "messages[0].role")
        }
    }

    func testErrorBodyHasOpenAIShapeWithNulls() throws {
        let body = APIError.malformedJSON("unexpected end").body
        let error = try XCTUnwrap((try JSONSerialization.jsonObject(with: body) as? [String: Any])?["error"] as? [String: Any])
        XCTAssertEqual(error["type"] as? String, "invalid_request_error")
        XCTAssertEqual(error["code"] as? String, "invalid_json")
        XCTAssertTrue(error["param"] is NSNull)
        XCTAssertEqual(error["message"] as? String, "the request body is not valid JSON for this endpoint: unexpected end")
    }
}
