import Foundation
import XCTest
@testable import ExpertStore

/// `plans`, `rm`, `gc` and `slim --replace` as a user runs them, and the rule that only
/// `import` creates a store.
final class StoreHygieneCommandTests: StoreTestCase {
    /// Every store command that fails in a folder without a store leaves no `moekit.store` there.
    func testFailedCommandsCreateNoStore() throws {
        let folder = scratchURL("empty-folder")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let commands: [[String]] = [
            ["slim", "--profile", "p", "--name", "x", "--prune", "reap"],
            ["profile", "--calib", "nowhere", "--name", "p"],
            ["plans"], ["gc"], ["rm", "--plan", "x"], ["rm", "--profile", "p"],
            ["eval", "--plans", "x", "--data", "nowhere"],
        ]
        for arguments in commands {
            let result = try run(arguments, environment: ["MOEKIT_STORE": ""], directory: folder)
            XCTAssertNotEqual(result.status, 0, "\(arguments): \(result.stdout)")
            XCTAssertFalse(result.killed)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [],
                           "\(arguments.joined(separator: " ")) left files behind (stderr: \(result.stderr))")
        }
    }

    struct Listing: Decodable {
        struct Entry: Decodable { var name: String; var expertBytes: Int; var derivedBytes: Int; var exclusiveBytes: Int }
        var plans: [Entry]
        var profiles: [String]
    }

    struct Report: Decodable { var expertRecords: Int; var expertBytes: Int; var denseVariantBytes: Int; var plans: [String] }

    /// The issue's scenario: re-slimming a name, removing a plan and collecting its records,
    /// with the other plan giving the same logits throughout.
    func testPlanLifecycleFromTheCommandLine() throws {
        guard FileManager.default.fileExists(atPath: StoreFixtures.defaultModel.appendingPathComponent("model.safetensors").path) else {
            throw XCTSkip("the default model is not present")
        }
        let store = try importedStore(StoreFixtures.defaultModel).path
        let calib = StoreFixtures.defaultModel.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("calib/python").path
        func moekit(_ arguments: [String], line: UInt = #line) throws -> Run {
            let result = try run(arguments + ["--store", store])
            XCTAssertFalse(result.killed, line: line)
            return result
        }
        func succeed(_ arguments: [String], line: UInt = #line) throws -> String {
            let result = try moekit(arguments, line: line)
            XCTAssertEqual(result.status, 0, "\(arguments): \(result.stderr)", line: line)
            return result.stdout
        }
        func fail(_ arguments: [String], saying fragment: String, line: UInt = #line) throws {
            let result = try moekit(arguments, line: line)
            XCTAssertNotEqual(result.status, 0, "\(arguments) succeeded", line: line)
            XCTAssertTrue(result.stderr.contains(fragment), "\(arguments): \(result.stderr)", line: line)
        }
        func decode<T: Decodable>(_ type: T.Type, _ arguments: [String], line: UInt = #line) throws -> T {
            try JSONDecoder().decode(T.self, from: Data(try succeed(arguments + ["--json"], line: line).utf8))
        }
        _ = try succeed(["profile", "--calib", calib, "--name", "python", "--max-samples", "4"])
        _ = try succeed(["slim", "--profile", "python", "--prune", "reap", "--keep", "0.5", "--novices", "0.25", "--name", "a"])
        _ = try succeed(["slim", "--profile", "python", "--merge", "hc-smoe", "--keep", "0.5", "--name", "b"])
        let logitsOfB = try succeed(["logits", "--plan", "b", "--ids", "1,2,3,4"])

        try fail(["slim", "--profile", "python", "--prune", "frequency", "--keep", "0.25", "--name", "a"], saying: "--replace")
        try fail(["slim", "--profile", "python", "--prune", "frequency", "--keep", "0.25", "--name", "full"], saying: "reserved")
        try fail(["inspect", "--plan", "nosuch"], saying: "no plan named 'nosuch'")
        _ = try succeed(["slim", "--profile", "python", "--prune", "frequency", "--keep", "0.25", "--novices", "0.5", "--name", "a", "--replace"])

        let listing = try decode(Listing.self, ["plans"])
        XCTAssertEqual(listing.plans.map(\.name), ["a", "b"])
        XCTAssertEqual(listing.profiles, ["python"])
        XCTAssertTrue(try succeed(["plans"]).contains("exclusive"))
        // The replaced plan's novices that the new one does not keep are orphans.
        XCTAssertGreaterThan(try decode(Report.self, ["gc"]).expertRecords, 0)

        _ = try succeed(["rm", "--plan", "a"])
        try fail(["rm", "--plan", "a"], saying: "no plan named 'a'")
        XCTAssertEqual(try decode(Listing.self, ["plans"]).plans.map(\.name), ["b"])
        let report = try decode(Report.self, ["gc"])
        XCTAssertEqual(report.expertBytes + report.denseVariantBytes, listing.plans[0].exclusiveBytes, "gc frees what `plans` said only 'a' used")
        XCTAssertEqual(report.plans, ["b"])
        XCTAssertEqual(try succeed(["logits", "--plan", "b", "--ids", "1,2,3,4"]), logitsOfB)
        _ = try succeed(["rm", "--profile", "python"])
        XCTAssertEqual(try decode(Listing.self, ["plans"]).profiles, [])
        try fail(["rm", "--plan", "b", "--profile", "python"], saying: "exactly one")
    }
}
