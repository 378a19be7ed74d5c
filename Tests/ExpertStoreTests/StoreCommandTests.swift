import Foundation
import XCTest
@testable import ExpertStore
@testable import MoE

/// `--store` on the model commands gives what `--model` gives, and import/export keep the
/// tokenizer files byte for byte.
final class StoreCommandTests: StoreTestCase {
    /// A fixture checkpoint plus the default model's tokenizer files.
    func checkpointWithTokenizer() throws -> URL {
        let folder = scratchURL("qwen3_moe_with_tokenizer")
        try FileManager.default.copyItem(at: StoreFixtures.url("qwen3_moe"), to: folder)
        let tokenizerSource = StoreFixtures.defaultModel
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: tokenizerSource.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        return folder
    }

    func testModelCommandsAcceptStoreInPlaceOfModel() throws {
        let checkpoint = try checkpointWithTokenizer()
        let store = scratchURL("store")
        let imported = try run(["import", "--model", checkpoint.path, "--store", store.path, "--json"])
        XCTAssertEqual(imported.status, 0, imported.stderr)
        XCTAssertEqual(imported.stderr, "", "no progress output when stderr is not a terminal")
        let summary = try JSONDecoder().decode(ImportSummary.self, from: Data(imported.stdout.utf8))
        XCTAssertEqual(summary.outcome, .imported)
        XCTAssertEqual(summary.experts, 16)

        let text = "Hello, store! 123 (x) => y"
        let fromModel = try run(["tokenize", "--model", checkpoint.path, text])
        let fromStore = try run(["tokenize", "--store", store.path, text])
        XCTAssertEqual(fromModel.status, 0, fromModel.stderr)
        XCTAssertEqual(fromStore.stdout, fromModel.stdout)
        XCTAssertTrue(fromStore.stdout.hasPrefix("["), fromStore.stdout)

        let ids = try StoreFixtures.referenceIDs("qwen3_moe").prefix(8).map(String.init).joined(separator: ",")
        let logitsModel = try run(["logits", "--model", checkpoint.path, "--ids", ids])
        let logitsStore = try run(["logits", "--store", store.path, "--ids", ids])
        XCTAssertEqual(logitsStore.status, 0, logitsStore.stderr)
        XCTAssertEqual(logitsStore.stdout, logitsModel.stdout)

        let both = try run(["logits", "--model", checkpoint.path, "--store", store.path, "--ids", ids])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("pass either --model DIR or --store PATH, not both"), both.stderr)

        let inspect = try run(["inspect", "--store", store.path, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(json?["architecture"] as? String, "qwen3_moe")
        let storeInfo = json?["store"] as? [String: Any]
        XCTAssertEqual(storeInfo?["files"] as? [String], ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"])
        XCTAssertEqual((storeInfo?["databases"] as? [[String: Any]])?.map { $0["name"] as? String }, ["meta", "dense", "experts", "profiles", "plans"])

        // Export writes the tokenizer files back byte for byte.
        let out = scratchURL("export")
        let exported = try run(["export", "--store", store.path, "--out", out.path])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        for file in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(file)), try Data(contentsOf: checkpoint.appendingPathComponent(file)), file)
        }
    }

    func testStoreWithoutTokenizerSaysSo() throws {
        let store = try importedStore(StoreFixtures.url("olmoe"))
        let result = try run(["tokenize", "--store", store.path, "hi"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("the store has no tokenizer.json"), result.stderr)
    }
}
