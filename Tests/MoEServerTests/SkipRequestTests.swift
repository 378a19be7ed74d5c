import Compression
import ExpertStore
import Foundation
import MoE
@testable import MoEServer
import Routing
import XCTest

/// `"moekit": {"skip": …}`: a request's own expert-skipping rule. Parsed (and refused by name)
/// with the request, resolved against the answering plan and its profile, and generating what
/// the same plan with that rule built in generates.
final class SkipRequestTests: XCTestCase {
    let prompt = "def fibonacci(n):\n    "

    func request(_ json: String) throws -> GenerationRequest { try GenerationRequest.completion(json: Data(json.utf8)) }

    func testTheFieldParsesAndBadRulesAreRefusedByName() throws {
        XCTAssertEqual(try request(#"{"prompt": "x", "moekit": {"skip": "ser:1,0.5"}}"#).skip, .rule(.ser(minimum: 1, threshold: 0.5)))
        XCTAssertEqual(try request(#"{"prompt": "x", "moekit": {"skip": "top-p:0.7"}}"#).skip, .rule(.topP(0.7)))
        XCTAssertEqual(try request(#"{"prompt": "x", "moekit": {"skip": "none"}}"#).skip, SkipRequest.none)
        XCTAssertNil(try request(#"{"prompt": "x", "moekit": {}}"#).skip)
        XCTAssertNil(try request(#"{"prompt": "x"}"#).skip)
        for (json, param) in [(#"{"prompt": "x", "moekit": {"skip": "fast"}}"#, "moekit.skip"),
                              (#"{"prompt": "x", "moekit": {"skip": "top-p:2"}}"#, "moekit.skip"),
                              (#"{"prompt": "x", "moekit": {"skip": 3}}"#, "moekit.skip"),
                              (#"{"prompt": "x", "moekit": {"skipp": "lu"}}"#, "moekit.skipp")] {
            XCTAssertThrowsError(try request(json), json) { error in
                XCTAssertEqual((error as? APIError)?.param, param, "\(json): \(error)")
                XCTAssertEqual((error as? APIError)?.status.code, 400, json)
            }
        }
    }

    func testOverrideGeneratesWhatThePlanWithTheRuleGenerates() throws {
        let fixture = try ServeFixture.shared()
        let engine = try ServingEngine(store: fixture.store, configuration: ServerConfiguration(plans: ["python-50"]))
        let plan = try PlanLoader.plan(named: "python-50", in: fixture.store)
        let description = try fixture.store.modelDescription()
        let layers = description.moeLayerIndices

        // lu: β_r of each layer is the plan's profile's median of p_r/p_1.
        var luRequest = try request(#"{"prompt": "x", "moekit": {"skip": "lu"}}"#)
        luRequest.prompt = prompt
        let lu = try XCTUnwrap(try engine.prepare(luRequest, defaultMaxTokens: 8).skip)
        let profile = try XCTUnwrap(try fixture.store.profiles.get(RoutingProfile.self, named: try XCTUnwrap(plan.recipe.profiles.first)))
        for l in layers {
            let medians = (2...description.layers[l].moe!.topK).map { Float(profile.layers[l]!.scoreRatioQuantile(rank: $0, quantile: 0.5)!) }
            XCTAssertEqual(lu.layers[l], .ratio(thresholds: medians), "layer \(l)")
        }

        // ser: the served answer equals Generator on the plan with the rule in its layers.
        var serRequest = try request(#"{"prompt": "x", "max_tokens": 12, "moekit": {"skip": "ser:1,0.4"}}"#)
        serRequest.prompt = prompt
        let prepared = try engine.prepare(serRequest, defaultMaxTokens: nil)
        let served = try engine.generate(prepared)
        var ruled = plan
        for l in layers { ruled.layers[l]!.expertMap.routingRule = RoutingRule(skip: .ser(minimum: 1, threshold: 0.4)) }
        let model = try PlanLoader.model(plan: ruled, store: fixture.store).model
        let reference = try Generator(model: model).generate(prompt: prepared.promptTokens, maxTokens: 12,
                                                               stopTokens: Set(description.eosTokenIDs))
        XCTAssertEqual(served.tokens, reference)
        let plain = try engine.generate(try engine.prepare(GenerationRequest(model: nil, prompt: prompt, maxTokens: 12, sampling: .init(), stop: [], stream: false),
                                                           defaultMaxTokens: nil))
        XCTAssertEqual(try engine.generate(try engine.prepare({ var r = serRequest; r.skip = SkipRequest.none; return r }(), defaultMaxTokens: nil)).tokens,
                       plain.tokens, "none on a plan without a rule is the plan")

        // A rule keeping more experts than the plan chooses is a 400 naming the field.
        var tooMany = try request(#"{"prompt": "x", "moekit": {"skip": "ser:9,0.5"}}"#)
        tooMany.prompt = prompt
        XCTAssertThrowsError(try engine.prepare(tooMany, defaultMaxTokens: 4)) { error in
            XCTAssertEqual((error as? APIError)?.param, "moekit.skip", "\(error)")
        }
    }
}
