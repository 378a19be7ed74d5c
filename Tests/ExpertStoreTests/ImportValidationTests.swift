import Foundation
import XCTest
@testable import ExpertStore
@testable import MoE

/// `import` refuses what loading the checkpoint (`logits`, `inspect`) refuses, before it
/// creates anything: the store made from a zero top-k crashed every later command.
final class ImportValidationTests: StoreTestCase {
    /// The mixtral fixture with `key` set to `value` in config.json (tensors linked).
    func mutatedMixtral(_ key: String, _ value: Any) throws -> URL {
        let source = StoreFixtures.url("mixtral")
        let folder = scratchURL("checkpoint-\(key)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "config.json" {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name), withDestinationURL: source.appendingPathComponent(name))
        }
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as? [String: Any])
        json[key] = value
        try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("config.json"))
        return folder
    }

    func testImportRefusesWhatLoadingRefuses() throws {
        let cases: [(key: String, value: Any)] = [("num_experts_per_tok", 0), ("num_hidden_layers", -1), ("rms_norm_eps", -1e-6),
                                                  ("num_key_value_heads", 3), ("vocab_size", 500)]
        for (key, value) in cases {
            let checkpoint = try mutatedMixtral(key, value)
            var loadError: ConfigError?
            XCTAssertThrowsError(try MoEModel(directory: checkpoint), key) { loadError = $0 as? ConfigError }
            XCTAssertEqual(loadError?.key, key)
            let store = scratchURL("store-\(key)")
            XCTAssertThrowsError(try StoreImporter(checkpoint: checkpoint, store: store).run(), key) { error in
                XCTAssertEqual(error as? ConfigError, loadError, "\(key): \(error)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: store.path), "\(key): a refused import created \(store.path)")
        }
    }

    /// A store whose kept config.json is out of range (imported before the checks existed)
    /// is refused when opened, instead of trapping when the model runs.
    func testOpeningAStoreChecksItsConfigAgain() throws {
        let url = try importedStore(StoreFixtures.url("mixtral"))
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: StoreFixtures.url("mixtral/config.json"))) as? [String: Any])
        json["num_experts_per_tok"] = 0
        let bad = Array(try JSONSerialization.data(withJSONObject: json))
        do {
            let store = try ExpertStore(url: url, readOnly: false)
            try store.environment.write { txn in try txn.put(store.meta, Array(StoreSchema.MetaKey.file("config.json").utf8), bad) }
        }
        XCTAssertThrowsError(try ExpertStore(url: url)) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "num_experts_per_tok", "\(error)")
            XCTAssertTrue(String(describing: error).contains(url.path), "\(error)")
        }
    }
}
