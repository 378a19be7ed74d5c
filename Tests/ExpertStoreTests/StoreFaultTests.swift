import XCTest
@testable import ExpertStore
@testable import MoE

/// In-process faults: imports stopped at every kind of point, damaged records and files,
/// another model's checkpoint. (Imports killed with SIGKILL: `KilledImportTests`.)
final class StoreFaultTests: StoreTestCase {
    struct Stop: Error {}

    /// Stops an import at `point`, then checks what opening the store says and that running
    /// the import again finishes it with the checkpoint's logits.
    func assertInterruptedImportResumes(family: String, stopAt point: (ImportEvent) -> Bool,
                                        expectOpen: (Error) -> Void, line: UInt = #line) throws {
        let checkpoint = StoreFixtures.url(family)
        let store = scratchURL("store")
        XCTAssertThrowsError(try StoreImporter(checkpoint: checkpoint, store: store).run { event in
            if point(event) { throw Stop() }
        }, line: line) { XCTAssertTrue($0 is Stop, line: line) }
        XCTAssertThrowsError(try ExpertStore(url: store), line: line) { expectOpen($0) }
        let summary = try StoreImporter(checkpoint: checkpoint, store: store).run()
        XCTAssertNotEqual(summary.outcome, .alreadyComplete, line: line)
        let ids = try StoreFixtures.referenceIDs(family)
        let logits = try ExpertStore(url: store).loadModel().logits(ids)
        XCTAssertTrue(logits.values == (try MoEModel(directory: checkpoint).logits(ids)).values, line: line)
        XCTAssertEqual(try StoreImporter(checkpoint: checkpoint, store: store).run().outcome, .alreadyComplete, line: line)
    }

    func testImportStoppedBeforeAnythingCommittedSaysToRunImport() throws {
        try assertInterruptedImportResumes(family: "qwen2_moe", stopAt: { if case .started = $0 { return true }; return false }) { error in
            guard case let .notAStore(_, reason) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("moekit import"), reason)
        }
    }

    func testImportStoppedAfterDenseSaysIncompleteAndResumes() throws {
        try assertInterruptedImportResumes(family: "deepseek_v3", stopAt: { if case .denseCommitted = $0 { return true }; return false }) { error in
            guard case let .importIncomplete(path, completed, total, source) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual([completed, total], [0, 2])
            XCTAssertEqual(source, StoreFixtures.url("deepseek_v3").path)
            XCTAssertEqual("\(error)", "\(path): the import is incomplete (0 of 2 MoE layers written); re-run the same command, `moekit import --model \(source) --store \(path)`, to resume it")
        }
    }

    func testImportStoppedMidLayerKeepsOnlyCommittedLayers() throws {
        // Layer 1's transaction is cut off after its fourth expert: only layer 0 is in.
        let stop: (ImportEvent) -> Bool = { if case .expertWritten(1, 3, _, _) = $0 { return true }; return false }
        try assertInterruptedImportResumes(family: "mixtral", stopAt: stop) { error in
            guard case let .importIncomplete(_, completed, total, _) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual([completed, total], [1, 2])
        }
        // And what is in the store after the stop is exactly layer 0's experts.
        let store = scratchURL("store")
        XCTAssertThrowsError(try StoreImporter(checkpoint: StoreFixtures.url("mixtral"), store: store).run { if stop($0) { throw Stop() } })
        let partial = try ExpertStore(environment: LMDBEnvironment.open(directory: store, readOnly: true), url: store)
        XCTAssertEqual(try partial.expertKeys(), (0..<8).map { ExpertKey(layer: 0, expert: $0) })
        XCTAssertEqual(try partial.importState()?.completedLayers, [0])
    }

    func testImportOfAnotherModelIsRefusedAndChangesNothing() throws {
        let store = try importedStore(StoreFixtures.url("mixtral"))
        let data = store.appendingPathComponent("data.mdb")
        let before = try fileBytes(data)
        XCTAssertThrowsError(try StoreImporter(checkpoint: StoreFixtures.url("olmoe"), store: store).run()) { error in
            guard case let .differentModel(path, storeModel, _, checkpoint, _) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, store.path)
            XCTAssertEqual(storeModel, "mixtral from \(StoreFixtures.url("mixtral").path)")
            XCTAssertEqual(checkpoint, StoreFixtures.url("olmoe").path)
            XCTAssertTrue("\(error)".contains("import into a new store path instead"))
        }
        XCTAssertEqual(try fileBytes(data), before)
        let ids = try StoreFixtures.referenceIDs("mixtral")
        XCTAssertTrue(try ExpertStore(url: store).loadModel().logits(ids).values == (try MoEModel(directory: StoreFixtures.url("mixtral")).logits(ids)).values)
    }

    /// Same config and names, one weight changed: a different fingerprint, so refused too.
    func testFingerprintSeesOneChangedWeight() throws {
        let original = StoreFixtures.url("qwen3_moe")
        let copy = scratchURL("qwen3_moe_changed")
        try FileManager.default.copyItem(at: original, to: copy)
        let file = copy.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: file)
        let a = try ModelFingerprint.compute(checkpoint: CheckpointDirectory(url: original), config: try Data(contentsOf: original.appendingPathComponent("config.json")))
        let b = try ModelFingerprint.compute(checkpoint: CheckpointDirectory(url: copy), config: try Data(contentsOf: copy.appendingPathComponent("config.json")))
        XCTAssertNotEqual(a, b)
        let store = try importedStore(original)
        XCTAssertThrowsError(try StoreImporter(checkpoint: copy, store: store).run()) {
            guard case .differentModel = $0 as? StoreError else { return XCTFail("\($0)") }
        }
    }

    func testFlippedByteInAnExpertRecordNamesLayerAndExpert() throws {
        let store = try importedStore(StoreFixtures.url("qwen2_moe"))
        let key = ExpertKey(layer: 1, expert: 3)
        // Find the record's bytes in data.mdb and flip one weight byte there.
        let record: [UInt8] = try {
            let s = try ExpertStore(url: store)
            return try s.environment.read { txn in Array(try txn.get(s.experts, key.bytes)!) }
        }()
        let data = store.appendingPathComponent("data.mdb")
        var file = try fileBytes(data)
        guard let offset = file.firstRange(of: Data(record.prefix(160)))?.lowerBound else { return XCTFail("record not found in data.mdb") }
        file[offset + RecordHeader.size + 40] ^= 0x04
        try file.write(to: data)

        let opened = try ExpertStore(url: store)
        let source = try StoreExpertSource(store: opened)
        XCTAssertNoThrow(try source.expert(layer: 1, index: 2))
        XCTAssertThrowsError(try source.expert(layer: 1, index: 3)) { error in
            guard case let .checksumMismatch(path, name, _, _) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, store.path)
            XCTAssertEqual(name, "expert record (layer 1, expert 3 (original))")
            XCTAssertTrue("\(error)".hasPrefix("\(store.path): expert record (layer 1, expert 3 (original)) is corrupt: CRC-32C is 0x"), "\(error)")
        }
        // Export refuses to copy the damage out.
        XCTAssertThrowsError(try StoreExporter(store: opened).export(to: scratchURL("export"))) {
            guard case .checksumMismatch = $0 as? StoreError else { return XCTFail("\($0)") }
        }
    }

    func testFlippedByteInADenseRecordNamesTheTensor() throws {
        let store = try importedStore(StoreFixtures.url("olmoe"))
        let name = "model.layers.1.self_attn.o_proj.weight"
        let record: [UInt8] = try {
            let s = try ExpertStore(url: store)
            return try s.environment.read { txn in Array(try txn.get(s.dense, Array(name.utf8))!) }
        }()
        let data = store.appendingPathComponent("data.mdb")
        var file = try fileBytes(data)
        guard let offset = file.firstRange(of: Data(record.prefix(160)))?.lowerBound else { return XCTFail("record not found in data.mdb") }
        file[offset + record.count - 1] ^= 0x80
        try file.write(to: data)
        XCTAssertThrowsError(try ExpertStore(url: store).loadModel()) { error in
            guard case let .checksumMismatch(_, recordName, _, _) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(recordName, "dense tensor '\(name)'")
        }
    }

    func testTruncatedDataFileIsAClearErrorNotACrash() throws {
        let store = try importedStore(StoreFixtures.url("olmoe"))
        let data = store.appendingPathComponent("data.mdb")
        let full = try fileBytes(data)
        for keep in [full.count / 2, full.count - 4096, 5000] {
            try full.prefix(keep).write(to: data)
            for readOnly in [true, false] {
                XCTAssertThrowsError(try ExpertStore(url: store, readOnly: readOnly), "keep \(keep)") { error in
                    guard case let .truncated(path, expected, actual) = error as? StoreError else { return XCTFail("\(error)") }
                    XCTAssertEqual(path, store.path)
                    XCTAssertEqual(actual, keep)
                    XCTAssertGreaterThan(expected, keep)
                    XCTAssertTrue("\(error)".contains("data.mdb is truncated"))
                }
            }
            // A re-import into the damaged store is refused the same way, not written over.
            XCTAssertThrowsError(try StoreImporter(checkpoint: StoreFixtures.url("olmoe"), store: store).run()) {
                guard case .truncated = $0 as? StoreError else { return XCTFail("\($0)") }
            }
        }
        try Data().write(to: data)
        XCTAssertThrowsError(try ExpertStore(url: store)) { XCTAssertTrue($0 is StoreError, "\($0)") }
    }

    func testMissingStoreIsNotAStore() {
        let path = scratchURL("nothing-here")
        XCTAssertThrowsError(try ExpertStore(url: path)) { error in
            guard case let .notAStore(p, reason) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path.path)
            XCTAssertTrue(reason.contains("no data.mdb"), reason)
        }
    }

    /// The map only grows while no reader of this process could have pointers into it.
    func testMapDoesNotGrowUnderALiveReader() throws {
        let directory = scratchURL("env")
        let environment = try LMDBEnvironment(directory: directory, readOnly: false, create: true, mapSize: 1 << 20)
        let database = try XCTUnwrap(try environment.openDatabase("test", create: true))
        try environment.write { txn in try txn.put(database, Array("small".utf8), [1, 2, 3]) }
        let big = [UInt8](repeating: 7, count: 3 << 20)
        var snapshot: LMDBSnapshot? = try environment.snapshot()
        let held = try snapshot!.withTransaction { try $0.get(database, Array("small".utf8)) }
        XCTAssertThrowsError(try environment.write { txn in try txn.put(database, Array("big".utf8), big) }) {
            XCTAssertEqual($0 as? StoreError, .mapInUse(path: directory.path))
        }
        XCTAssertEqual(Array(held!), [1, 2, 3], "the reader's bytes are still mapped")
        snapshot = nil
        try environment.write { txn in try txn.put(database, Array("big".utf8), big) }
        XCTAssertGreaterThanOrEqual(environment.info.mapSize, 4 << 20)
        XCTAssertEqual(try environment.read { try $0.get(database, Array("big".utf8)).map(Array.init) }, big)
    }

    /// A map far too small for the checkpoint grows as the import fills it.
    func testMapGrowsWhenFull() throws {
        let store = scratchURL("store")
        _ = try StoreImporter(checkpoint: StoreFixtures.url("mixtral"), store: store, initialMapSize: 1).run()
        let opened = try ExpertStore(url: store)
        XCTAssertGreaterThan(opened.environment.info.mapSize, 1 << 20)
        XCTAssertGreaterThan(LMDBEnvironment.fileSize(store.appendingPathComponent("data.mdb").path)!, 1 << 20)
        let ids = try StoreFixtures.referenceIDs("mixtral")
        XCTAssertTrue(try opened.loadModel().logits(ids).values == (try MoEModel(directory: StoreFixtures.url("mixtral")).logits(ids)).values)
    }
}
