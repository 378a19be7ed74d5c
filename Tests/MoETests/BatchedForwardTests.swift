import Foundation
import XCTest
@testable import MoE

/// Several sequences in one forward pass (`forward(batch:caches:)`, `BatchGenerator`) against
/// the same sequences run one at a time.
final class BatchedForwardTests: XCTestCase {
    /// Three sequences at different points, in one step: one prefilling 5 tokens from an
    /// empty cache, one decoding a token after 7 cached, one prefilling 3 after 2 cached.
    /// Every family (grouped and latent attention, shared experts, sliding window…) gives each
    /// sequence the logits and cache it gets alone, within rounding.
    func testMixedPrefillAndDecodeBatchEqualsSeparatePasses() throws {
        for family in Fixtures.families {
            let model = try MoEModel(directory: Fixtures.url(family))
            let ids = try Fixtures.reference(family).ids
            let histories = [Array(ids[0..<0]), Array(ids[1..<8]), Array(ids[10..<12])]
            let steps = [Array(ids[12..<17]), [ids[8]], Array(ids[3..<6])]
            var alone = [KVCache](), expected = [Matrix]()
            var together = [KVCache]()
            for (history, step) in zip(histories, steps) {
                var cache = model.makeCache()
                if !history.isEmpty { _ = try model.forward(history, cache: &cache) }
                together.append(cache)
                expected.append(try model.forward(step, cache: &cache))
                alone.append(cache)
            }
            let batched = try model.forward(batch: steps, caches: &together)
            XCTAssertEqual(batched.map(\.rows), steps.map(\.count), family)
            for i in steps.indices {
                XCTAssertLessThan(maxAbsDifference(batched[i].values, expected[i].values), 1e-4, "\(family) sequence \(i)")
                XCTAssertEqual(argmaxPerRow(batched[i]), argmaxPerRow(expected[i]), "\(family) sequence \(i)")
                XCTAssertEqual(together[i].length, alone[i].length, family)
                for l in 0..<model.description.layerCount {
                    XCTAssertLessThan(maxAbsDifference(together[i].layers[l].keys, alone[i].layers[l].keys), 1e-4, "\(family) layer \(l) keys")
                    XCTAssertLessThan(maxAbsDifference(together[i].layers[l].values, alone[i].layers[l].values), 1e-4, "\(family) layer \(l) values")
                }
            }
        }
    }

    /// A batch of one is the unbatched forward pass, bit for bit.
    func testBatchOfOneIsTheForwardPass() throws {
        let model = try MoEModel(directory: Fixtures.url("qwen2_moe"))
        let ids = try Fixtures.reference("qwen2_moe").ids
        var caches = [model.makeCache()]
        let batched = try model.forward(batch: [Array(ids.prefix(9))], caches: &caches)
        XCTAssertEqual(batched[0].values, try model.logits(Array(ids.prefix(9))).values)
    }

    /// A bad sequence is refused before anything runs, with the error an unbatched pass gives.
    func testBatchChecksEverySequence() throws {
        let model = try MoEModel(directory: Fixtures.url("mixtral"))
        let vocab = model.description.vocabularySize
        var caches = [model.makeCache(), model.makeCache()]
        XCTAssertThrowsError(try model.forward(batch: [[1, 2], [3, vocab]], caches: &caches)) {
            XCTAssertEqual($0 as? ModelError, .tokenOutOfRange(token: vocab, vocabularySize: vocab))
        }
        XCTAssertThrowsError(try model.forward(batch: [[1, 2], []], caches: &caches)) {
            XCTAssertEqual($0 as? ModelError, .emptyInput)
        }
        XCTAssertEqual(caches.map(\.length), [0, 0])
    }

    /// Eight greedy requests from eight threads share forward passes and each gets what
    /// `Generator` gives it alone; sampled requests keep their own seeded sampler.
    func testConcurrentRequestsShareStepsAndMatchGenerator() throws {
        let model = try MoEModel(directory: Fixtures.url("olmoe"))
        let ids = try Fixtures.reference("olmoe").ids
        let prompts = (0..<8).map { Array(ids[$0..<($0 + 3 + $0 % 4)]) }
        let samplings = (0..<8).map { $0 % 2 == 0 ? SamplingParameters() : SamplingParameters(temperature: 0.8, topP: 0.9, seed: UInt64($0)) }
        let expected = try zip(prompts, samplings).map { try Generator(model: model).generate(prompt: $0, maxTokens: 12, sampling: $1) }
        let batcher = BatchGenerator(model: model, maxBatchSize: 8)
        let results = Locked([[Int]?](repeating: nil, count: 8))
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let produced = try? batcher.generate(prompt: prompts[i], maxTokens: 12, sampling: samplings[i])
            results.mutate { $0[i] = produced }
        }
        XCTAssertEqual(results.value.map { $0 ?? [] }, expected)
        let statistics = batcher.statistics
        XCTAssertGreaterThan(statistics.largestBatch, 1, "requests in flight together must share a step")
        XCTAssertLessThanOrEqual(statistics.largestBatch, 8)
        XCTAssertLessThan(statistics.steps, 8 * 12, "fewer steps than running the requests one after another")
    }

    /// Stop tokens, early stops by the callback, zero tokens and bad prompts follow `Generator`.
    func testBatchGeneratorFollowsGeneratorsContract() throws {
        let model = try MoEModel(directory: Fixtures.url("mixtral"))
        let batcher = BatchGenerator(model: model, maxBatchSize: 2)
        let prompt = [1, 5, 9]
        let free = try Generator(model: model).generate(prompt: prompt, maxTokens: 6)
        XCTAssertEqual(try batcher.generate(prompt: prompt, maxTokens: 6), free)
        XCTAssertEqual(try batcher.generate(prompt: prompt, maxTokens: 6, stopTokens: [free[2]]), Array(free.prefix(2)))
        var seen = [Int]()
        XCTAssertEqual(try batcher.generate(prompt: prompt, maxTokens: 6) { seen.append($0); return seen.count < 3 }, Array(free.prefix(3)))
        XCTAssertEqual(seen, Array(free.prefix(3)))
        XCTAssertEqual(try batcher.generate(prompt: prompt, maxTokens: 0), [])
        XCTAssertThrowsError(try batcher.generate(prompt: [], maxTokens: 3)) { XCTAssertEqual($0 as? ModelError, .emptyInput) }
        let limit = model.description.maxPositionEmbeddings
        XCTAssertThrowsError(try batcher.generate(prompt: Array(repeating: 1, count: limit + 1), maxTokens: 1)) {
            XCTAssertEqual($0 as? ModelError, .contextOverflow(requested: limit + 1, limit: limit))
        }
        // A request that fills the context ends there instead of failing, as with `Generator`.
        let long = Array(repeating: 1, count: limit - 2)
        let filled = try batcher.generate(prompt: long, maxTokens: 10)
        XCTAssertEqual(filled, try Generator(model: model).generate(prompt: long, maxTokens: 10))
        XCTAssertEqual(filled.count, 3, "two tokens fill the context; the third is chosen from its last logits")
    }
}

/// A value shared between threads behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func mutate(_ change: (inout Value) -> Void) { lock.withLock { change(&stored) } }
}
