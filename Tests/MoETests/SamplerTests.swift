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

    func testGreedyGenerationMatchesArgmaxOfReferenceLogits() throws {
        // The first generated token after the reference prompt is the argmax of the
        // transformers logits at the last position.
        let model = try MoEModel(directory: Fixtures.url("mixtral"))
        let (ids, reference) = try Fixtures.reference("mixtral")
        let produced = try Generator(model: model).generate(prompt: ids, maxTokens: 1)
        XCTAssertEqual(produced, [argmaxPerRow(reference).last!])
    }
}
