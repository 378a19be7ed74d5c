import XCTest
@testable import ExpertStore
@testable import MoE

/// Importing a block-scaled FP8 checkpoint: widened to BF16 only when asked (`--dequantize`),
/// refused otherwise with the file and the first FP8 tensor named.
final class FP8ImportTests: StoreTestCase {
    let fixture = StoreFixtures.url("deepseek_v3_fp8")

    func testImportWithoutDequantizeIsRefusedNamingFileAndTensor() throws {
        let store = scratchURL("store")
        XCTAssertThrowsError(try StoreImporter(checkpoint: fixture, store: store).run()) { error in
            let expectedFile = self.fixture.appendingPathComponent("model.safetensors").path
            XCTAssertEqual(error as? CheckpointError,
                           .needsDequantization(file: expectedFile, tensor: "model.layers.0.mlp.down_proj.weight", dtype: "F8_E4M3"))
            XCTAssertTrue("\(error)".contains("--dequantize"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path), "a refused import leaves nothing behind")
    }

    /// The store holds BF16 weights and no scales, and the model run from it gives
    /// transformers' logits (on the same dequantized weights) within 1e-4.
    func testDequantizedImportMatchesTransformers() throws {
        let store = scratchURL("store")
        let summary = try StoreImporter(checkpoint: fixture, store: store, dequantizeFP8: true).run()
        XCTAssertEqual(summary.outcome, .imported)
        XCTAssertEqual(summary.experts, 8)
        XCTAssertFalse(summary.denseTensors == 0)
        let opened = try ExpertStore(url: store)
        let model = try opened.loadModel(precision: .float32)
        let reference = try SafetensorsFile(url: fixture.appendingPathComponent("reference.safetensors"))
        let ids = try reference.integers("input_ids"), expected = try reference.matrix("logits")
        let logits = try model.logits(ids)
        let difference = zip(logits.values, expected.values).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(difference, 1e-4, "max |Δlogit| = \(difference)")
        let dense = try opened.denseTensorNames()
        XCTAssertTrue(dense.contains("model.layers.0.mlp.down_proj.weight"))
        XCTAssertEqual(dense.filter { $0.hasSuffix("_scale_inv") }, [], "the scales are folded into the weights")
    }
}
