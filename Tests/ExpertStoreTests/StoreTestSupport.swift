import Foundation
import XCTest
@testable import ExpertStore
@testable import MoE

/// Fixture checkpoints (Tests/Fixtures) and scratch stores for the store tests.
enum StoreFixtures {
    static let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static let families = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3", "deepseek_v3_nolora", "deepseek_v3_yarn", "glm4_moe", "gpt_oss"]

    static func url(_ family: String) -> URL { root.appendingPathComponent(family) }

    /// The bundled default model, when its trained weights exist.
    static let defaultModel = root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")

    static func referenceIDs(_ family: String) throws -> [Int] {
        try SafetensorsFile(url: url("\(family)/reference.safetensors")).integers("input_ids")
    }
}

/// A fresh directory under the system temporary folder, removed by `tearDown`.
class StoreTestCase: XCTestCase {
    private var scratch = [URL]()

    func scratchURL(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-store-tests-\(UUID().uuidString)").appendingPathComponent(name)
        scratch.append(url.deletingLastPathComponent())
        return url
    }

    override func tearDown() {
        for url in scratch { try? FileManager.default.removeItem(at: url) }
        scratch.removeAll()
        super.tearDown()
    }

    /// Imports `checkpoint` into a new store and returns the store's path.
    func importedStore(_ checkpoint: URL, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let store = scratchURL("store")
        let summary = try StoreImporter(checkpoint: checkpoint, store: store).run()
        XCTAssertEqual(summary.outcome, .imported, file: file, line: line)
        return store
    }

    func fileBytes(_ url: URL) throws -> Data { try Data(contentsOf: url) }
}
