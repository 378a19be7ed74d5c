import XCTest
@testable import ExpertStore
@testable import MoE

final class StoreExportTests: StoreTestCase {
    /// import → export → import: same logits, and the export holds every original tensor
    /// byte for byte under its original name and dtype, and the original side files.
    func testExportRoundTripForEveryFamily() throws {
        for family in StoreFixtures.families {
            let original = StoreFixtures.url(family)
            let first = try ExpertStore(url: try importedStore(original))
            let exported = scratchURL("export-\(family)")
            let summary = try StoreExporter(store: first).export(to: exported)
            XCTAssertEqual(summary.files, ["config.json", "generation_config.json", "model.safetensors"], family)

            let source = try CheckpointDirectory(url: original)
            let copy = try CheckpointDirectory(url: exported)
            XCTAssertEqual(copy.tensorNames, source.tensorNames, family)
            // Tensors as the files hold them: gpt-oss's experts are written fused, as imported.
            XCTAssertEqual(summary.tensors, source.storedTensorNames.count, family)
            XCTAssertEqual(copy.storedTensorNames, source.storedTensorNames, family)
            for name in source.tensorNames {
                let (a, b) = (try source.layout(name), try copy.layout(name))
                XCTAssertEqual(a.dtype, b.dtype, "\(family) \(name)")
                XCTAssertEqual(a.shape, b.shape, "\(family) \(name)")
                XCTAssertEqual(try source.tensorBytes(name).withUnsafeBytes { Array($0) }, try copy.tensorBytes(name).withUnsafeBytes { Array($0) }, "\(family) \(name)")
            }
            for file in ["config.json", "generation_config.json"] {
                XCTAssertEqual(try Data(contentsOf: exported.appendingPathComponent(file)),
                               try Data(contentsOf: original.appendingPathComponent(file)), "\(family) \(file)")
            }
            // Same fingerprint, so the same model; and a second import runs to the same logits.
            let second = try ExpertStore(url: try importedStore(exported))
            XCTAssertEqual(try second.fingerprint(), try first.fingerprint(), family)
            let ids = try StoreFixtures.referenceIDs(family)
            XCTAssertTrue(try second.loadModel().logits(ids).values == (try first.loadModel().logits(ids)).values, family)
            XCTAssertTrue(try MoEModel(directory: exported).logits(ids).values == (try MoEModel(directory: original).logits(ids)).values, family)
        }
    }

    func testExportRefusesANonEmptyFolder() throws {
        let store = try ExpertStore(url: try importedStore(StoreFixtures.url("qwen3_moe")))
        let target = scratchURL("export")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: target.appendingPathComponent("notes.txt"))
        XCTAssertThrowsError(try StoreExporter(store: store).export(to: target)) {
            XCTAssertEqual($0 as? StoreError, .outputNotEmpty(path: target.path))
        }
        XCTAssertEqual(try String(contentsOf: target.appendingPathComponent("notes.txt"), encoding: .utf8), "keep me")
    }
}

final class StoreContentsTests: StoreTestCase {
    func testContentsAndDatabaseUsage() throws {
        let store = try ExpertStore(url: try importedStore(StoreFixtures.url("deepseek_v3")))
        let description = try store.modelDescription()
        let checkpoint = try CheckpointDirectory(url: StoreFixtures.url("deepseek_v3"))
        // Layer 0 is dense; layers 1 and 2 have 8 experts each, walked in key order.
        XCTAssertEqual(description.moeLayerIndices, [1, 2])
        XCTAssertEqual(try store.expertKeys(), [1, 2].flatMap { l in (0..<8).map { ExpertKey(layer: l, expert: $0) } })
        let expertNames = Set(description.tensorInventory.filter { $0.expert != nil }.map(\.name))
        XCTAssertEqual(try store.denseTensorNames(), checkpoint.tensorNames.filter { !expertNames.contains($0) })
        XCTAssertEqual(try store.fileNames(), ["config.json", "generation_config.json"])
        let usage = Dictionary(uniqueKeysWithValues: try store.databaseUsage().map { ($0.name, $0) })
        XCTAssertEqual(usage.keys.sorted(), ["dense", "experts", "meta", "plans", "profiles"])
        XCTAssertEqual(usage["experts"]?.entries, 16)
        XCTAssertEqual(usage["dense"]?.entries, checkpoint.tensorNames.count - expertNames.count)
        XCTAssertEqual(usage["meta"]?.entries, 6)   // format, description, fingerprint, import, 2 files
        XCTAssertEqual(usage["profiles"]?.entries, 0)
        XCTAssertGreaterThan(usage["experts"]!.bytes, 16 * 3 * 64 * 32 * 4)
        let report = try store.verifyExperts()
        XCTAssertEqual(report.records, 16)
        XCTAssertEqual(report.bytes, 16 * (96 + 3 * 64 * 32 * 4))
    }

    struct Plan: Codable, Equatable {
        var keep: [Int]
        var note: String
    }

    func testDocumentsArePutListedAndRemoved() throws {
        let url = try importedStore(StoreFixtures.url("qwen3_moe"))
        do {
            let store = try ExpertStore(url: url, readOnly: false)
            try store.plans.put(Plan(keep: [1, 2], note: "code"), named: "code")
            try store.plans.put(Plan(keep: [3], note: "math"), named: "math")
            try store.plans.put(Plan(keep: [4], note: "math v2"), named: "math")
            try store.profiles.put(["layer0": [0.5, 0.25]], named: "calib/code")
            XCTAssertEqual(try store.plans.names(), ["code", "math"])
            XCTAssertEqual(try store.plans.get(Plan.self, named: "math"), Plan(keep: [4], note: "math v2"))
            XCTAssertEqual(String(decoding: try store.plans.raw(named: "code")!, as: UTF8.self), #"{"keep":[1,2],"note":"code"}"#)
            XCTAssertNil(try store.plans.get(Plan.self, named: "missing"))
            XCTAssertTrue(try store.plans.remove(named: "code"))
            XCTAssertFalse(try store.plans.remove(named: "code"))
            XCTAssertThrowsError(try store.plans.get([String].self, named: "math")) {
                guard case let .malformedDocument(_, record, _) = $0 as? StoreError else { return XCTFail("\($0)") }
                XCTAssertEqual(record, "plan 'math'")
            }
        }
        let readOnly = try ExpertStore(url: url)
        XCTAssertEqual(try readOnly.plans.names(), ["math"])
        XCTAssertEqual(try readOnly.profiles.get([String: [Double]].self, named: "calib/code"), ["layer0": [0.5, 0.25]])
        XCTAssertThrowsError(try readOnly.plans.put(Plan(keep: [], note: ""), named: "x")) {
            XCTAssertEqual($0 as? StoreError, .readOnly(path: url.path, operation: "write"))
        }
    }
}
