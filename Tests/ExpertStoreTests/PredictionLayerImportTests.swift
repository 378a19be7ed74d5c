import Foundation
import XCTest
@testable import ExpertStore
@testable import MoE

/// GLM-4.5's multi-token-prediction layer (Tests/Fixtures/glm4_moe, model.layers.3) in the
/// store: kept byte for byte as dense records, out of the model that runs, and checked all or
/// nothing at import.
final class PredictionLayerImportTests: StoreTestCase {
    /// The fixture rewritten without the tensors `drop` selects (config.json unchanged).
    func checkpoint(dropping drop: (String) -> Bool, _ label: String) throws -> URL {
        let source = StoreFixtures.url("glm4_moe")
        let folder = scratchURL("checkpoint-\(label)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in ["config.json", "generation_config.json"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: folder.appendingPathComponent(name))
        }
        let original = try CheckpointDirectory(url: source)
        var writer = SafetensorsWriter()
        for name in original.tensorNames where !drop(name) {
            let info = try original.layout(name)
            writer.add(name, dtype: info.dtype, shape: info.shape, bytes: try original.tensorBytes(name).withUnsafeBytes { Array($0) })
        }
        try writer.write(to: folder.appendingPathComponent("model.safetensors"))
        return folder
    }

    func testPredictionLayerIsStoredWholeAndNotRun() throws {
        let store = try ExpertStore(url: try importedStore(StoreFixtures.url("glm4_moe")))
        let checkpoint = try CheckpointDirectory(url: StoreFixtures.url("glm4_moe"))
        let prediction = checkpoint.tensorNames.filter { $0.hasPrefix("model.layers.3.") }
        XCTAssertEqual(prediction.count, 44)
        let dense = Set(try store.denseTensorNames())
        let provider = try StoreTensorProvider(store: store)
        for name in prediction {
            XCTAssertTrue(dense.contains(name), name)
            let stored = try provider.withVerifiedBytes(name) { bytes, _ in Array(bytes) }
            XCTAssertEqual(stored, Array(try checkpoint.file(for: name).rawBytes(name)), name)
        }
        // Expert records exist only for the decoder's MoE layers 1 and 2.
        XCTAssertEqual(Set(try store.expertKeys().map(\.layer)), [1, 2])
        XCTAssertEqual(try store.modelDescription().predictionLayers?.count, 1)
        XCTAssertEqual(try store.loadModel().layers.count, 3)
    }

    /// transformers' save_pretrained drops the layer and keeps num_nextn_predict_layers: such a
    /// checkpoint imports and runs to the same logits.
    func testCheckpointWithoutThePredictionLayerImports() throws {
        let folder = try checkpoint(dropping: { $0.hasPrefix("model.layers.3.") }, "without")
        let store = try ExpertStore(url: try importedStore(folder))
        let ids = try StoreFixtures.referenceIDs("glm4_moe")
        XCTAssertEqual(try store.loadModel().logits(ids).values, try MoEModel(directory: StoreFixtures.url("glm4_moe")).logits(ids).values)
    }

    func testPartialPredictionLayerIsRefusedNamingTheTensor() throws {
        let missing = "model.layers.3.mlp.experts.5.up_proj.weight"
        let folder = try checkpoint(dropping: { $0 == missing }, "partial")
        let store = scratchURL("store-partial")
        XCTAssertThrowsError(try StoreImporter(checkpoint: folder, store: store).run()) { error in
            guard case let .checkpointMismatch(_, reason) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains(missing) && reason.contains("multi-token-prediction"), reason)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path))
    }
}
