import Foundation
import XCTest
@testable import MoE

/// The bundled default model (models/moekit-tiny, BF16 on disk) against transformers logits
/// on held-out text (tools/train/make_reference.py → Tests/Fixtures/moekit-tiny).
final class DefaultModelTests: XCTestCase {
    static let modelDirectory = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")

    func testLogitsMatchTransformersOnHeldOutText() throws {
        let model = try MoEModel(directory: Self.modelDirectory)
        let (ids, reference) = try Fixtures.reference("moekit-tiny")
        // The ids are the bundled tokenizer's encoding of the reference text.
        let text = try JSONDecoder().decode([String: AnyDecodable].self, from: Data(contentsOf: Fixtures.url("moekit-tiny/reference.json")))
        if let string = text["text"]?.string {
            let tokenizer = try Tokenizer(contentsOf: Self.modelDirectory.appendingPathComponent("tokenizer.json"))
            XCTAssertEqual(Array(tokenizer.encode(string).prefix(ids.count)), ids)
        }
        let logits = try model.logits(ids)
        let prefill = maxAbsDifference(logits.values, reference.values)
        XCTAssertLessThanOrEqual(prefill, 1e-3, "prefill max |Δlogit| = \(prefill)")
        XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference))
        var cache = model.makeCache()
        var rows = [Float]()
        for id in ids { rows += try model.forward([id], cache: &cache).values }
        let decode = maxAbsDifference(rows, reference.values)
        XCTAssertLessThanOrEqual(decode, 1e-3, "decode max |Δlogit| = \(decode)")
        print("parity moekit-tiny prefill max|Δ| = \(prefill), decode max|Δ| = \(decode)")
    }

    func testDescription() throws {
        let checkpoint = try CheckpointDirectory(url: Self.modelDirectory)
        let description = try Architectures.describe(configData: try checkpoint.configData())
        XCTAssertEqual(description.family, .qwen3Moe)
        XCTAssertGreaterThanOrEqual(description.moeLayerIndices.count, 4)
        XCTAssertGreaterThanOrEqual(description.layers[0].moe!.expertCount, 32)
        XCTAssertEqual(description.layers[0].moe!.topK, 4)
        XCTAssertLessThanOrEqual(checkpoint.storedBytes, 64 << 20)
    }
}

/// Just enough JSON decoding to read one string field of a mixed object.
struct AnyDecodable: Decodable {
    var string: String?
    init(from decoder: Decoder) throws { string = try? decoder.singleValueContainer().decode(String.self) }
}
