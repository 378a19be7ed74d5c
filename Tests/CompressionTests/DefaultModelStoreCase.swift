import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE

/// A test case over a fresh store of the default model (models/moekit-tiny, qwen3_moe,
/// BF16), removed after each test, with a helper that profiles, slims and commits a plan.
/// Shared by the export tests (GGUF, MLX).
class DefaultModelStoreCase: XCTestCase {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("models/moekit-tiny")
    var directory: URL!
    var store: ExpertStore!
    let sequences = (0..<3).map { s in (0..<16).map { (($0 + 3) * (s + 5) * 37) % 8000 + 3 } }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(type(of: self))-\(UUID().uuidString)")
        let url = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: Self.model, store: url).run()
        store = try ExpertStore(url: url, readOnly: false)
    }

    override func tearDownWithError() throws {
        store = nil
        try? FileManager.default.removeItem(at: directory)
    }

    /// Profiles `sequences`, slims a plan named `name` as `configure` sets it, commits and loads it.
    func slim(_ name: String, _ configure: (inout SlimOptions) -> Void) throws -> CompressionPlan {
        let profile = try CalibrationProfiler(fingerprint: store.fingerprint()!, source: "test")
            .profile(model: store.loadModel(), sequences: sequences)
        var options = SlimOptions(name: name)
        configure(&options)
        let slimmer = try Slimmer(store: store)
        try slimmer.commit(try slimmer.slim(profile: profile, profileName: "test", options: options, calibration: sequences))
        return try PlanLoader.plan(named: name, in: store)
    }
}
