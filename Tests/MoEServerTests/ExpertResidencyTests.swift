import MoE
@testable import MoEServer
import XCTest

/// The choice between loading experts at start and the cache, on hand-picked sizes, and the
/// statistics line `moekit generate` ends with.
final class ExpertResidencyTests: XCTestCase {
    static let mib = 1 << 20
    let footprint = ExpertFootprint(denseBytes: 100 * mib, expertBytes: 900 * mib, minimumCacheBytes: 8 * mib, planCount: 1)

    func budget(_ mib: Int) -> AvailableMemory.Budget { AvailableMemory.Budget(bytes: mib * Self.mib, source: "test \(mib) MiB") }

    func testFittingPlanIsLoadedAtStart() {
        // 1000 MiB of weights + 100 MiB (10%) + 64 MiB = 1164 MiB.
        let fits = ExpertResidency.decide(footprint: footprint, requestedLimit: nil, budget: budget(1164))
        XCTAssertEqual(fits.mode, .resident)
        XCTAssertEqual(fits.summary, "all 900 MiB of experts resident (1.14 GiB available: test 1164 MiB)")
        // `serve --auto` loads nothing at start either way; when everything fits, its cache is unbounded.
        XCTAssertEqual(ExpertResidency.decide(footprint: footprint, requestedLimit: nil, budget: budget(1164), onDemand: true).mode,
                       .cached(limitBytes: nil))
    }

    func testPlanThatDoesNotFitGoesThroughACacheOfWhatIsLeft() {
        let tight = ExpertResidency.decide(footprint: footprint, requestedLimit: nil, budget: budget(1163))
        // (1163 − 64) / 1.1 = 999.09… MiB for dense and cache together, less 100 MiB dense.
        let expected = Int(Double(1099 * Self.mib) / 1.1) - 100 * Self.mib
        XCTAssertEqual(tight.mode, .cached(limitBytes: expected))
        XCTAssertEqual(tight.summary, "experts through an LRU cache of 899 MiB (plan needs 900 MiB, 1.14 GiB available: test 1163 MiB)")

        // Barely anything left: the cache still holds one layer's top-k experts.
        let starved = ExpertResidency.decide(footprint: footprint, requestedLimit: nil, budget: budget(150))
        XCTAssertEqual(starved.mode, .cached(limitBytes: 8 * Self.mib))
        XCTAssertTrue(starved.summary.hasSuffix("; raised to one layer's top-k experts)"), starved.summary)
    }

    func testRequestedBoundIsUsedAsGiven() {
        let bounded = ExpertResidency.decide(footprint: footprint, requestedLimit: 1 * Self.mib, budget: budget(100_000))
        XCTAssertEqual(bounded.mode, .cached(limitBytes: 1 * Self.mib))
        XCTAssertEqual(bounded.summary,
                       "experts through an LRU cache of 1.00 MiB (--max-expert-memory; plan needs 900 MiB, 97.7 GiB available: test 100000 MiB)")
    }

    func testStatisticsLine() {
        let plain = GenerationStatistics(promptTokens: 10, promptSeconds: 0.5, generatedTokens: 21, generationSeconds: 4,
                                         peakResidentBytes: 100 * Self.mib + Self.mib / 2)
        XCTAssertEqual(plain.line, "prompt: 10 tokens, 20.0 tok/s | generation: 21 tokens, 5.0 tok/s | peak memory: 100.5 MiB")
        var cached = plain
        cached.cache = ExpertCache.Statistics(hits: 3, misses: 1, evictions: 2, residentBytes: 0, entries: 0, limitBytes: 1)
        XCTAssertEqual(cached.line, plain.line + " | expert cache: 3 hits, 1 misses (75.0% hit rate), 2 evictions")
        // One token comes out of the prefill alone: no decode rate to give.
        XCTAssertEqual(GenerationStatistics(promptTokens: 1, promptSeconds: 0.25, generatedTokens: 1, generationSeconds: 0).line,
                       "prompt: 1 token, 4.0 tok/s | generation: 1 token")
    }

    func testTimerSplitsPrefillFromGeneration() throws {
        var timer = GenerationTimer(promptTokens: 3)
        Thread.sleep(forTimeInterval: 0.05)
        timer.tokenProduced()
        Thread.sleep(forTimeInterval: 0.1)
        timer.tokenProduced()
        timer.tokenProduced()
        let stats = timer.statistics()
        XCTAssertEqual(stats.generatedTokens, 3)
        XCTAssertGreaterThanOrEqual(stats.promptSeconds, 0.05)
        XCTAssertGreaterThanOrEqual(stats.generationSeconds, 0.1)
        XCTAssertEqual(try XCTUnwrap(stats.generationRate), 2 / stats.generationSeconds, accuracy: 1e-9)
    }
}
