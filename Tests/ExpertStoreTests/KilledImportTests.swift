import Foundation
import XCTest
@testable import ExpertStore
@testable import MoE

/// The real thing: `moekit import` run as a child process and killed with SIGKILL at chosen
/// points (through the `MOEKIT_TEST_KILL_AT` hook) and after random delays; and readers in
/// several processes at once.
final class KilledImportTests: StoreTestCase {
    func referenceLogits(_ family: String) throws -> [Float] {
        try MoEModel(directory: StoreFixtures.url(family)).logits(try StoreFixtures.referenceIDs(family)).values
    }

    /// After a kill, the store either opens (complete) or says the import is incomplete and
    /// how to resume; resuming gives the checkpoint's logits exactly.
    func assertRecovers(store: URL, family: String, expectCompleted: Int?, line: UInt = #line) throws {
        do {
            _ = try ExpertStore(url: store)
            print("  store after the kill: complete")
            XCTAssertNil(expectCompleted, "store opened although the import was killed before completing", line: line)
        } catch let StoreError.importIncomplete(_, completed, total, source) {
            print("  store after the kill: import incomplete, \(completed) of \(total) layers")
            if let expectCompleted { XCTAssertEqual(completed, expectCompleted, line: line) }
            XCTAssertEqual(source, StoreFixtures.url(family).path, line: line)
            XCTAssertLessThanOrEqual(completed, total, line: line)
            // The CLI says the same, and how to resume.
            let refused = try run(["logits", "--store", store.path, "--ids", "1,2"])
            XCTAssertNotEqual(refused.status, 0, line: line)
            XCTAssertTrue(refused.stderr.contains("the import is incomplete") && refused.stderr.contains("to resume it"), refused.stderr, line: line)
        } catch let StoreError.notAStore(_, reason) {
            // Killed before the first transaction committed: nothing is there.
            print("  store after the kill: nothing committed")
            XCTAssertTrue(reason.contains("moekit import"), reason, line: line)
        }
        let resumed = try run(["import", "--model", StoreFixtures.url(family).path, "--store", store.path])
        XCTAssertEqual(resumed.status, 0, resumed.stderr, line: line)
        let logits = try ExpertStore(url: store).loadModel().logits(try StoreFixtures.referenceIDs(family)).values
        XCTAssertTrue(logits == (try referenceLogits(family)), "logits differ after resuming", line: line)
    }

    func testKilledAtEachStageResumesToIdenticalLogits() throws {
        // mixtral: MoE layers 0 and 1, 8 experts each.
        let points: [(String, Int)] = [("dense", 0), ("expert:0:3", 0), ("layer:0", 1), ("expert:1:7", 1), ("layer:1", 2)]
        for (point, completed) in points {
            let store = scratchURL("store-\(point)")
            let killed = try run(["import", "--model", StoreFixtures.url("mixtral").path, "--store", store.path],
                                 environment: ["MOEKIT_TEST_KILL_AT": point])
            XCTAssertTrue(killed.killed, "\(point): import was not killed (status \(killed.status)): \(killed.stderr)")
            try assertRecovers(store: store, family: "mixtral", expectCompleted: completed)
        }
    }

    func testKilledAfterRandomDelaysResumes() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<4 {
            let store = scratchURL("store-\(round)")
            let started = try start(["import", "--model", StoreFixtures.url("deepseek_v3").path, "--store", store.path])
            let delay = UInt32.random(in: 0..<60_000, using: &generator)
            usleep(delay)
            kill(started.0.processIdentifier, SIGKILL)
            let result = try finish(started)
            print("random kill round \(round): after \(delay) µs, killed: \(result.killed)")
            try assertRecovers(store: store, family: "deepseek_v3", expectCompleted: nil)
        }
    }

    /// What an import killed between creating LMDB's files and its first commit leaves: an
    /// empty data.mdb and lock.mdb. Opening it says nothing was committed (LMDB itself, read
    /// only, fails with a bare EBADF), and importing again completes it.
    func testEmptyDataFileIsNotAStoreAndImportCompletesIt() throws {
        let store = scratchURL("store-empty")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        for file in ["data.mdb", "lock.mdb"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: store.appendingPathComponent(file).path, contents: Data()))
        }
        XCTAssertThrowsError(try ExpertStore(url: store)) { error in
            guard case let StoreError.notAStore(_, reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("empty"), reason)
        }
        try assertRecovers(store: store, family: "deepseek_v3", expectCompleted: nil)
    }

    /// Readers in other processes and in this one, all at once, all read-only.
    func testReadOnlyStoreReadByManyProcessesAtOnce() throws {
        let storeURL = try importedStore(StoreFixtures.url("qwen3_moe"))
        let data = storeURL.appendingPathComponent("data.mdb")
        let before = try fileBytes(data)
        let ids = try StoreFixtures.referenceIDs("qwen3_moe")
        // This process holds a read-only store with a long-lived read transaction.
        let store = try ExpertStore(url: storeURL)
        XCTAssertTrue(store.isReadOnly)
        let model = try store.loadModel()
        let children = try (0..<3).map { _ in
            try start(["logits", "--store", storeURL.path, "--ids", ids.map(String.init).joined(separator: ",")])
        }
        let here = try model.logits(ids).values
        for child in children {
            let result = try finish(child)
            XCTAssertEqual(result.status, 0, result.stderr)
            let parsed = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: [[Double]]]
            let rows = try XCTUnwrap(parsed?["logits"])
            XCTAssertEqual(rows.count, ids.count)
            XCTAssertTrue(rows.joined().map(Float.init) == here, "a reader process got other logits")
        }
        XCTAssertTrue(here == (try referenceLogits("qwen3_moe")))
        XCTAssertEqual(try fileBytes(data), before, "readers changed data.mdb")
        // inspect --store works alongside too.
        let inspect = try run(["inspect", "--store", storeURL.path])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("variants          original (16 experts)"), inspect.stdout)
    }

    /// Two imports of the same checkpoint racing on one store both succeed and leave it complete.
    func testConcurrentImportsOfTheSameModel() throws {
        let store = scratchURL("store")
        let arguments = ["import", "--model", StoreFixtures.url("deepseek_v3_yarn").path, "--store", store.path]
        let racers = try (0..<3).map { _ in try start(arguments) }
        for racer in racers {
            let result = try finish(racer)
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        let opened = try ExpertStore(url: store)
        XCTAssertEqual(try opened.importState()?.completedLayers.sorted(), [1, 2])
        XCTAssertEqual(try opened.verifyExperts().records, 16)
        XCTAssertTrue(try opened.loadModel().logits(try StoreFixtures.referenceIDs("deepseek_v3_yarn")).values == (try referenceLogits("deepseek_v3_yarn")))
    }

    func testCLIRefusesAnotherModelAndLeavesTheStoreAlone() throws {
        let storeURL = try importedStore(StoreFixtures.url("olmoe"))
        let before = try fileBytes(storeURL.appendingPathComponent("data.mdb"))
        let refused = try run(["import", "--model", StoreFixtures.url("qwen2_moe").path, "--store", storeURL.path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("the store holds another model (olmoe"), refused.stderr)
        XCTAssertEqual(try fileBytes(storeURL.appendingPathComponent("data.mdb")), before)
    }
}
