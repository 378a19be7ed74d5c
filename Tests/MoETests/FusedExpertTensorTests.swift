import XCTest
@testable import MoE

/// Checkpoints whose experts are 3-D tensors (`experts.gate_up_proj [E, 2f, d]`,
/// `experts.down_proj [E, d, f]`), made by tools/fixtures/make_fused_fixtures.py from the
/// state dict transformers 5 holds, with logits of transformers reloading the fused file.
final class FusedExpertTensorTests: XCTestCase {
    static let families = ["mixtral", "qwen3_moe"]
    let tolerance: Float = 1e-4

    func testFusedCheckpointsMatchTransformersInPrefillAndDecode() throws {
        for family in Self.families {
            let model = try MoEModel(directory: Fixtures.url("fused/\(family)"))
            let (ids, reference) = try Fixtures.reference("fused/\(family)")
            let logits = try model.logits(ids)
            let prefill = maxAbsDifference(logits.values, reference.values)
            XCTAssertLessThanOrEqual(prefill, tolerance, "\(family): fused prefill max |Δlogit| = \(prefill)")
            XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference), family)

            var cache = model.makeCache()
            var rows = [Float]()
            for id in ids { rows += try model.forward([id], cache: &cache).values }
            let decoded = Matrix(rows: ids.count, columns: reference.columns, values: rows)
            let decode = maxAbsDifference(decoded.values, reference.values)
            XCTAssertLessThanOrEqual(decode, tolerance, "\(family): fused decode max |Δlogit| = \(decode)")
            XCTAssertEqual(argmaxPerRow(decoded), argmaxPerRow(reference), family)
        }
    }

    /// The fused checkpoint presents exactly the per-expert checkpoint's names, shapes and
    /// bytes (transformers wrote both from the same weights), and hides its 3-D tensors.
    func testFusedCheckpointPresentsThePerExpertLayout() throws {
        for family in Self.families {
            let fused = try CheckpointDirectory(url: Fixtures.url("fused/\(family)"))
            let perExpert = try CheckpointDirectory(url: Fixtures.url(family))
            XCTAssertEqual(fused.tensorNames, perExpert.tensorNames, family)
            XCTAssertTrue(fused.storedTensorNames.contains { $0.hasSuffix(".experts.gate_up_proj") }, family)
            XCTAssertFalse(fused.contains("model.layers.0.mlp.experts.gate_up_proj"), family)
            for name in perExpert.tensorNames {
                let (a, b) = (try fused.layout(name), try perExpert.layout(name))
                XCTAssertEqual(a.dtype, b.dtype, "\(family) \(name)")
                XCTAssertEqual(a.shape, b.shape, "\(family) \(name)")
                let same = try fused.tensorBytes(name).withUnsafeBytes { x in
                    try perExpert.tensorBytes(name).withUnsafeBytes { y in x.elementsEqual(y) }
                }
                XCTAssertTrue(same, "\(family) \(name): bytes differ")
            }
        }
    }

    // MARK: - Bad input

    /// A checkpoint folder holding one MoE layer's fused tensors of the given shapes.
    private func fusedCheckpoint(gateUp: [Int]?, down: [Int]?, gateUpRank3: Bool = true,
                                 downDType: DType = .f32) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-fused-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        var writer = SafetensorsWriter()
        func add(_ name: String, _ dtype: DType, _ shape: [Int]) {
            writer.add(name, dtype: dtype, shape: shape, bytes: [UInt8](repeating: 0, count: shape.reduce(1, *) * dtype.byteSize))
        }
        add("model.embed_tokens.weight", .f32, [4, 4])
        if let gateUp { add("model.layers.0.mlp.experts.gate_up_proj", .f32, gateUp) }
        if let down { add("model.layers.0.mlp.experts.down_proj", downDType, down) }
        try writer.write(to: folder.appendingPathComponent("model.safetensors"))
        return folder
    }

    private func assertMalformed(_ folder: URL, tensor: String, mentions: String,
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CheckpointDirectory(url: folder), file: file, line: line) { error in
            guard case let CheckpointError.malformedTensor(_, name, reason) = error else {
                return XCTFail("expected malformedTensor, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(name, tensor, file: file, line: line)
            XCTAssertTrue(reason.contains(mentions), "'\(reason)' should mention '\(mentions)'", file: file, line: line)
            XCTAssertTrue("\(error)".contains(folder.path), "the message names the checkpoint", file: file, line: line)
        }
    }

    func testFusedTensorsOfTheWrongShapeAreRefusedByName() throws {
        let gateUp = "model.layers.0.mlp.experts.gate_up_proj", down = "model.layers.0.mlp.experts.down_proj"
        // A well-formed pair is accepted and presents 2 experts × 3 projections.
        let good = try CheckpointDirectory(url: try fusedCheckpoint(gateUp: [2, 6, 4], down: [2, 4, 3]))
        XCTAssertEqual(try good.shape("model.layers.0.mlp.experts.1.up_proj.weight"), [3, 4])
        XCTAssertEqual(try good.shape("model.layers.0.mlp.experts.1.down_proj.weight"), [4, 3])
        XCTAssertEqual(good.tensorNames.count, 1 + 2 * 3)

        try assertMalformed(try fusedCheckpoint(gateUp: [2, 5, 4], down: [2, 4, 3]), tensor: gateUp, mentions: "2 × intermediate")
        try assertMalformed(try fusedCheckpoint(gateUp: [12, 4], down: [2, 4, 3]), tensor: gateUp, mentions: "[12, 4]")
        try assertMalformed(try fusedCheckpoint(gateUp: [2, 6, 4], down: nil), tensor: gateUp, mentions: down)
        try assertMalformed(try fusedCheckpoint(gateUp: [2, 6, 4], down: [3, 4, 3]), tensor: down, mentions: "[2, 4, 3]")
        try assertMalformed(try fusedCheckpoint(gateUp: [2, 6, 4], down: [2, 3, 4]), tensor: down, mentions: "[2, 4, 3]")
        try assertMalformed(try fusedCheckpoint(gateUp: [2, 6, 4], down: [2, 4, 3], downDType: .i32), tensor: down, mentions: "I32")
    }
}
