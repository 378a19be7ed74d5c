import CKernels
import XCTest
@testable import MoE

/// MXFP4 weights kept as stored (gpt-oss experts): the C kernels on a hand-computed block and
/// against the widened matrix, `MXFP4ExpertTensors` against transformers' own widening
/// (tools/fixtures/make_mxfp4_fixture.py), and the bad inputs.
final class MXFP4Tests: XCTestCase {
    let fixture = Fixtures.url("mxfp4")

    // MARK: - Kernels

    /// One row of one group: byte 0 = 0x21 holds codes 1 (0.5, low nibble: column 0) and 2
    /// (1.0, column 1); byte 1 = 0xF9 holds 9 (-0.5, column 2) and 15 (-6, column 3); the
    /// scale byte 128 is 2^1. So the row is 1, 2, -1, -12, then zeros.
    func testKernelsOnAHandComputedBlock() {
        var group = [UInt8](repeating: 0, count: 17)
        group[0] = 0x21
        group[1] = 0xF9
        group[16] = 128
        let weight = MXFP4Matrix(rows: 1, columns: 32, packed: group)
        var expected = [Float](repeating: 0, count: 32)
        expected[0...3] = [1, 2, -1, -12]
        XCTAssertEqual(weight.decoded().values, expected)
        XCTAssertEqual(weight.gatherRows([0]).values, expected)
        let x = Matrix(rows: 1, columns: 32, values: (1...32).map(Float.init))
        // 1·1 + 2·2 − 1·3 − 12·4 = −46
        XCTAssertEqual(weight.linear(x).values, [-46])
        var y: Float = 0
        group.withUnsafeBufferPointer { moe_mxfp4_gemv_portable($0.baseAddress!, 1, 0, 1, x.values, &y) }
        XCTAssertEqual(y, -46)
        // Scale 127 is 2^0, 120 is 2^-7.
        group[16] = 120
        XCTAssertEqual(MXFP4Matrix(rows: 1, columns: 32, packed: group).decoded().values[3], -6.0 / 128)
    }

    /// Every code and a range of scales: the matrix-vector kernels (SIMD and portable) and the
    /// batched path against the decoded matrix times x in double precision.
    func testKernelsMatchTheWidenedMatrix() {
        var generator = SystemRandomNumberGenerator()
        let (rows, columns) = (37, 96)
        var packed = [UInt8](repeating: 0, count: MXFP4Matrix.byteCount(rows: rows, columns: columns))
        for i in packed.indices {
            packed[i] = i % 17 == 16 ? UInt8.random(in: 120...134, using: &generator) : UInt8.random(in: 0...255, using: &generator)
        }
        let weight = MXFP4Matrix(rows: rows, columns: columns, packed: packed)
        let widened = weight.decoded()
        for n in [1, 3, 20] {
            let x = Matrix(rows: n, columns: columns, values: (0..<(n * columns)).map { _ in Float.random(in: -1...1) })
            let y = weight.linear(x)
            var portable = [Float](repeating: 0, count: rows)
            packed.withUnsafeBufferPointer { moe_mxfp4_gemv_portable($0.baseAddress!, columns / 32, 0, rows, x.values, &portable) }
            for i in 0..<n {
                for r in 0..<rows {
                    var exact = 0.0, magnitude = 0.0
                    for c in 0..<columns {
                        let term = Double(widened.values[r * columns + c]) * Double(x.values[i * columns + c])
                        exact += term
                        magnitude += abs(term)
                    }
                    let bound = 1e-5 * max(magnitude, 1)
                    XCTAssertEqual(Double(y.values[i * rows + r]), exact, accuracy: bound, "n \(n) row \(i) output \(r)")
                    if i == 0 { XCTAssertEqual(Double(portable[r]), exact, accuracy: bound, "portable output \(r)") }
                }
            }
        }
    }

    // MARK: - gpt-oss's fused MXFP4 experts

    /// Every per-expert projection decodes to exactly transformers' widened values (gate the
    /// even, up the odd rows of gate_up), and the packed tensors are hidden.
    func testPerExpertWeightsEqualTransformersDequantization() throws {
        let checkpoint = try CheckpointDirectory(url: fixture)
        let reference = try SafetensorsFile(url: fixture.appendingPathComponent("reference.safetensors"))
        let names = reference.tensors.keys.filter { $0.hasPrefix("model.") }.sorted()
        XCTAssertEqual(names.count, 2 * 3 * 3)
        XCTAssertEqual(checkpoint.tensorNames, names, "the checkpoint presents exactly the per-expert weights")
        for name in names {
            let expected = try reference.matrix(name)
            let weight = try MXFP4Matrix(tensor: name, in: checkpoint, rows: expected.rows, columns: expected.columns)
            XCTAssertEqual(weight.byteCount, expected.rows * expected.columns / 32 * 17, name)
            let decoded = weight.decoded()
            XCTAssertEqual(decoded.values.map(\.bitPattern), expected.values.map(\.bitPattern), "\(name) differs from transformers' widening")
        }
        XCTAssertEqual(try checkpoint.layout("model.layers.1.mlp.experts.2.down_proj.weight").shape, [64, 1, 17])
        // The kernel's product against torch's f32 product of the widened weight.
        let weight = try MXFP4Matrix(tensor: "model.layers.0.mlp.experts.1.gate_proj.weight", in: checkpoint, rows: 32, columns: 64)
        let y = weight.linear(try reference.matrix("x")), expected = try reference.matrix("y")
        let scale = expected.values.map(abs).max()!
        XCTAssertLessThanOrEqual(maxAbsDifference(y.values, expected.values), 1e-5 * scale)
    }

    /// The deepseek_v3 model with random MXFP4 experts, run straight from its checkpoint
    /// folder: the experts stay MXFP4 and the logits are transformers' on the widened values.
    func testACheckpointWithMXFP4ExpertsRunsAsStored() throws {
        let model = try MoEModel(directory: Fixtures.url("mxfp4_deepseek_v3"), precision: .float32)
        let (ids, reference) = try Fixtures.reference("mxfp4_deepseek_v3")
        let logits = try model.logits(ids)
        let prefill = maxAbsDifference(logits.values, reference.values)
        XCTAssertLessThanOrEqual(prefill, 1e-4, "prefill max |Δlogit| = \(prefill)")
        XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference))
        let checkpoint = try CheckpointDirectory(url: Fixtures.url("mxfp4_deepseek_v3"))
        let weight = try checkpoint.weight("model.layers.2.mlp.experts.7.down_proj.weight", shape: [64, 32], precision: .float32)
        XCTAssertTrue(weight is MXFP4Matrix, "kept as MXFP4, not widened")
        XCTAssertEqual(weight.byteCount, 64 * 17)
    }

    // MARK: - Bad input

    private let prefix = "model.layers.0.mlp.experts."

    /// A checkpoint with one layer of MXFP4 experts; each shape can be overridden.
    private func checkpoint(gateUpBlocks: [Int] = [2, 64, 2, 16], gateUpScales: [Int]? = [2, 64, 2],
                            downBlocks: [Int] = [2, 64, 1, 16], downScales: [Int] = [2, 64, 1]) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-mxfp4-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        var writer = SafetensorsWriter()
        func add(_ name: String, _ shape: [Int]) {
            writer.add(prefix + name, dtype: .u8, shape: shape, bytes: [UInt8](repeating: 0x11, count: shape.reduce(1, *)))
        }
        add("gate_up_proj_blocks", gateUpBlocks)
        if let gateUpScales { add("gate_up_proj_scales", gateUpScales) }
        add("down_proj_blocks", downBlocks)
        add("down_proj_scales", downScales)
        try writer.write(to: folder.appendingPathComponent("model.safetensors"))
        return folder
    }

    private func assertMalformed(_ folder: URL, tensor: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CheckpointDirectory(url: folder), file: file, line: line) { error in
            guard case let CheckpointError.malformedTensor(path, name, reason) = error else {
                return XCTFail("expected malformedTensor, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(path, folder.path, file: file, line: line)
            XCTAssertEqual(name, self.prefix + tensor, file: file, line: line)
            XCTAssertTrue(reason.contains(mentions), "'\(reason)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testMalformedMXFP4TensorsAreRefusedByName() throws {
        // The well-formed layer: 2 experts, f = 32, d = 64 (gate_up blocks [2, 64, 2, 16]).
        let good = try CheckpointDirectory(url: try checkpoint())
        XCTAssertEqual(try good.shape(prefix + "1.up_proj.weight"), [32, 2, 17])
        XCTAssertEqual(try good.shape(prefix + "1.down_proj.weight"), [64, 1, 17])
        // Blocks whose last dimension is not 16 bytes.
        try assertMalformed(try checkpoint(gateUpBlocks: [2, 64, 2, 8], gateUpScales: [2, 64, 2]),
                            tensor: "gate_up_proj_blocks", mentions: "[2, 64, 2, 8]")
        // Scales that do not match the blocks, or none at all.
        try assertMalformed(try checkpoint(gateUpScales: [2, 64, 3]), tensor: "gate_up_proj_scales", mentions: "[2, 64, 2]")
        try assertMalformed(try checkpoint(gateUpScales: nil), tensor: "gate_up_proj_blocks", mentions: "gate_up_proj_scales")
        try assertMalformed(try checkpoint(downScales: [2, 64]), tensor: "down_proj_scales", mentions: "[2, 64, 1]")
        // down_proj's d/32 groups do not match f, or its rows do not match d.
        try assertMalformed(try checkpoint(downBlocks: [2, 64, 2, 16], downScales: [2, 64, 2]), tensor: "down_proj_blocks", mentions: "[2, 64, 1, 16]")
        try assertMalformed(try checkpoint(downBlocks: [2, 32, 1, 16], downScales: [2, 32, 1]), tensor: "down_proj_blocks", mentions: "[2, 64, 1, 16]")
        // An odd number of interleaved gate/up rows.
        try assertMalformed(try checkpoint(gateUpBlocks: [2, 63, 2, 16], gateUpScales: [2, 63, 2]), tensor: "gate_up_proj_blocks", mentions: "even")
        try assertMalformed(try checkpoint(gateUpBlocks: [2, 8, 2, 16], gateUpScales: [2, 8, 2]), tensor: "gate_up_proj_blocks", mentions: "multiple of 32")
    }

    func testAWeightOfAnotherLayoutIsRefusedByName() throws {
        let checkpoint = try CheckpointDirectory(url: fixture)
        let name = "model.layers.0.mlp.experts.0.gate_proj.weight"
        XCTAssertThrowsError(try MXFP4Matrix(tensor: name, in: checkpoint, rows: 32, columns: 32)) { error in
            guard case let CheckpointError.malformedTensor(_, tensor, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, name)
            XCTAssertTrue(reason.contains("[32, 2, 17]"), reason)
        }
    }
}
