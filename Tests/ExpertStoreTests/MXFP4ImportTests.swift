import XCTest
@testable import ExpertStore
@testable import MoE

/// Experts a checkpoint stores in MXFP4 (gpt-oss's fused `_blocks`/`_scales` layout) are
/// imported as MXFP4 records, not widened, and run through the MXFP4 kernels. The fixture is
/// the deepseek_v3 model with random MXFP4 experts (tools/fixtures/make_mxfp4_fixture.py),
/// its reference transformers' logits with the widened expert values.
final class MXFP4ImportTests: StoreTestCase {
    let fixture = StoreFixtures.url("mxfp4_deepseek_v3")

    func testMXFP4ExpertsImportAsStoredAndMatchTransformers() throws {
        let storeURL = try importedStore(fixture)
        let store = try ExpertStore(url: storeURL)
        let record = try XCTUnwrap(try store.expertRecord(ExpertKey(layer: 1, expert: 5)))
        XCTAssertEqual(record.kind, .expertMXFP4)
        XCTAssertEqual(record.tensors.map(\.shape), [[32, 2, 17], [32, 2, 17], [64, 1, 17]])
        XCTAssertEqual(record.byteCount, 3 * 32 * 64 / 32 * 17, "4.25 bits per weight, as the checkpoint stores them")

        let reference = try SafetensorsFile(url: fixture.appendingPathComponent("reference.safetensors"))
        let ids = try reference.integers("input_ids"), expected = try reference.matrix("logits")
        let model = try store.loadModel(precision: .float32)
        let logits = try model.logits(ids)
        let prefill = zip(logits.values, expected.values).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(prefill, 1e-4, "prefill max |Δlogit| = \(prefill)")
        var cache = model.makeCache()
        var rows = [Float]()
        for id in ids { rows += try model.forward([id], cache: &cache).values }
        let decode = zip(rows, expected.values).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(decode, 1e-4, "decode max |Δlogit| = \(decode)")
    }
}
