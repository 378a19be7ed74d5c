import XCTest
@testable import MoE

final class SamplerTests: XCTestCase {
    func testGreedyPicksArgmax() {
        var sampler = Sampler(SamplingParameters(temperature: 0))
        XCTAssertEqual(sampler.sample([0.1, 3, -1, 2.9][...]), 1)
    }

    func testTopPKeepsOnlyTheNucleus() {
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top-p 0.6 keeps only token 0.
        let logits: [Float] = [3, 2, 1, 0]
        var sampler = Sampler(SamplingParameters(temperature: 1, topP: 0.6, seed: 7))
        for _ in 0..<200 { XCTAssertEqual(sampler.sample(logits[...]), 0) }
    }

    func testSamplingFollowsTheDistribution() {
        // softmax([ln 1, ln 3]) = [0.25, 0.75]
        let logits: [Float] = [0, log(3)]
        var sampler = Sampler(SamplingParameters(temperature: 1, seed: 42))
        let draws = 20_000
        let ones = (0..<draws).filter { _ in sampler.sample(logits[...]) == 1 }.count
        XCTAssertEqual(Double(ones) / Double(draws), 0.75, accuracy: 0.015)
    }

    func testSameSeedSameSamples() {
        let logits: [Float] = (0..<50).map { Float($0 % 7) * 0.3 }
        var a = Sampler(SamplingParameters(temperature: 0.8, topP: 0.9, seed: 3))
        var b = Sampler(SamplingParameters(temperature: 0.8, topP: 0.9, seed: 3))
        XCTAssertEqual((0..<100).map { _ in a.sample(logits[...]) }, (0..<100).map { _ in b.sample(logits[...]) })
    }

    func testTopKOfOneIsGreedyAndTopKTwoKeepsTheTwoLikeliest() {
        let logits: [Float] = [0.2, 3, -1, 2.9, 1]
        var one = Sampler(SamplingParameters(temperature: 1.5, topK: 1, seed: 11))
        for _ in 0..<200 { XCTAssertEqual(one.sample(logits[...]), 1) }
        var two = Sampler(SamplingParameters(temperature: 1.5, topK: 2, seed: 11))
        let drawn = Set((0..<500).map { _ in two.sample(logits[...]) })
        XCTAssertEqual(drawn, [1, 3])
    }

    func testMinPDropsTokensBelowItsShareOfTheLikeliest() {
        // softmax([3, 2, 1, 0]) ≈ [0.644, 0.237, 0.087, 0.032]; min_p 0.3 keeps p ≥ 0.193: tokens 0 and 1,
        // drawn in proportion 0.644 : 0.237.
        let logits: [Float] = [3, 2, 1, 0]
        var sampler = Sampler(SamplingParameters(temperature: 1, minP: 0.3, seed: 5))
        let draws = (0..<20_000).map { _ in sampler.sample(logits[...]) }
        XCTAssertEqual(Set(draws), [0, 1])
        let expected = exp(3.0) / (exp(3.0) + exp(2.0))
        XCTAssertEqual(Double(draws.filter { $0 == 0 }.count) / 20_000, expected, accuracy: 0.015)
    }

    func testRepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens() {
        // Token 2 is in the prompt: -1 × 2 = -2. Token 0 is then chosen (greedy): 2 / 2 = 1.
        var sampler = Sampler(SamplingParameters(repetitionPenalty: 2), prompt: [2])
        let logits: [Float] = [2, 1, -1, 0.5]
        XCTAssertEqual(sampler.penalized(logits[...]), [2, 1, -2, 0.5])
        XCTAssertEqual(sampler.sample(logits[...]), 0)
        XCTAssertEqual(sampler.penalized(logits[...]), [1, 1, -2, 0.5])
    }

    func testPresenceAndFrequencyPenaltiesFollowOpenAIsFormula() {
        // logit[j] - count[j] × frequency - (count[j] > 0) × presence, over generated tokens only.
        let logits: [Float] = [2, 1.8, 0]
        var sampler = Sampler(SamplingParameters(presencePenalty: 0.5, frequencyPenalty: 0.25), prompt: [1])
        XCTAssertEqual(sampler.penalized(logits[...]), [2, 1.8, 0])   // the prompt does not count
        XCTAssertEqual(sampler.sample(logits[...]), 0)
        XCTAssertEqual(sampler.penalized(logits[...]), [2 - 0.25 - 0.5, 1.8, 0])
        XCTAssertEqual(sampler.sample(logits[...]), 1)                // 1.8 > 1.25
        XCTAssertEqual(sampler.penalized(logits[...]), [1.25, 1.8 - 0.25 - 0.5, 0])
        XCTAssertEqual(sampler.sample(logits[...]), 0)                // 1.25 > 1.05
        XCTAssertEqual(sampler.penalized(logits[...])[0], 2 - 2 * 0.25 - 0.5, accuracy: 1e-6)
        // Presence alone: a greedy answer alternates where it would repeat token 0.
        var presence = Sampler(SamplingParameters(presencePenalty: 0.5))
        XCTAssertEqual((0..<4).map { _ in presence.sample(logits[...]) }, [0, 1, 0, 0])
    }

    func testLogprobsAreTheLogSoftmaxOfTheRawLogits() {
        // softmax([0, ln 3, -inf-ish]) ≈ [0.25, 0.75, 0]
        let logits: [Float] = [0, log(3), -30]
        let entry = TokenLogprobs(logits: logits[...], token: 0, top: 2)
        XCTAssertEqual(entry.logprob, log(0.25), accuracy: 1e-5)
        XCTAssertEqual(entry.top.map(\.token), [1, 0])
        XCTAssertEqual(entry.top[0].logprob, log(0.75), accuracy: 1e-5)
        XCTAssertEqual(TokenLogprobs(logits: logits[...], token: 2, top: 0).top, [])
    }

    func testGreedyGenerationMatchesArgmaxOfReferenceLogits() throws {
        // The first generated token after the reference prompt is the argmax of the
        // transformers logits at the last position.
        let model = try MoEModel(directory: Fixtures.url("mixtral"))
        let (ids, reference) = try Fixtures.reference("mixtral")
        let produced = try Generator(model: model).generate(prompt: ids, maxTokens: 1)
        XCTAssertEqual(produced, [argmaxPerRow(reference).last!])
    }
}
