import XCTest
@testable import MoE

/// Block-scaled FP8 checkpoints (DeepSeek-V3/R1, Kimi-K2): the E4M3 decode, the widening to
/// BF16 (`FP8BlockDequantization`) against tools/fixtures/make_fp8_fixture.py's reference,
/// and the bad inputs.
final class FP8CheckpointTests: XCTestCase {
    let fixture = Fixtures.url("deepseek_v3_fp8")

    // MARK: - E4M3

    /// All 256 codes against torch's `float8_e4m3fn` widening (a table computed by PyTorch,
    /// not by this code): the subnormals, both zeros, ±448 and the two NaNs included.
    func testEveryE4M3CodeDecodesAsTorchWidensIt() throws {
        let torchValues = try SafetensorsFile(url: Fixtures.url("fp8/e4m3_values.safetensors")).floats("values")
        XCTAssertEqual(torchValues.count, 256)
        for code in 0..<256 {
            let ours = FP8E4M3.values[code], theirs = torchValues[code]
            if theirs.isNaN {
                XCTAssertTrue(ours.isNaN, "code \(code)")
            } else {
                XCTAssertEqual(ours.bitPattern, theirs.bitPattern, "code \(code): \(ours) vs torch \(theirs)")
            }
        }
    }

    /// Hand-computed codes: S.EEEE.MMM with bias 7, subnormals m × 2⁻⁹.
    func testE4M3HandComputedValues() {
        XCTAssertEqual(FP8E4M3.decode(0x00), 0)
        XCTAssertEqual(FP8E4M3.decode(0x80).sign, .minus)           // -0
        XCTAssertEqual(FP8E4M3.decode(0x01), 1.0 / 512)             // smallest subnormal 2⁻⁹
        XCTAssertEqual(FP8E4M3.decode(0x07), 7.0 / 512)             // largest subnormal
        XCTAssertEqual(FP8E4M3.decode(0x08), 1.0 / 64)              // smallest normal 2⁻⁶
        XCTAssertEqual(FP8E4M3.decode(0x38), 1)                     // 0.0111.000
        XCTAssertEqual(FP8E4M3.decode(0x3C), 1.5)                   // 0.0111.100
        XCTAssertEqual(FP8E4M3.decode(0xC4), -3)                    // 1.1000.100 = -(1.5 × 2)
        XCTAssertEqual(FP8E4M3.decode(0x7E), 448)                   // 0.1111.110, the largest finite
        XCTAssertTrue(FP8E4M3.decode(0x7F).isNaN)
        XCTAssertTrue(FP8E4M3.decode(0xFF).isNaN)
        XCTAssertEqual(FP8E4M3.decode(0x78), 256)                   // 0.1111.000 is finite (no infinities)
    }

    // MARK: - Widening

    func fp8Checkpoint() throws -> CheckpointDirectory {
        try CheckpointDirectory(url: fixture, derivations: [FP8BlockDequantization()] + CheckpointDirectory.standardDerivations)
    }

    /// The widened weights are Python's dequantized BF16 values bit for bit, edge blocks
    /// (the 160-wide dense MLP: a 128 block and a 32 block) included; the scales disappear.
    func testWidenedWeightsEqualTheReferenceDequantizationBitForBit() throws {
        let checkpoint = try fp8Checkpoint()
        let reference = try SafetensorsFile(url: fixture.appendingPathComponent("reference.safetensors"))
        let checked = reference.tensors.keys.filter { $0.hasPrefix("dequantized.") }.sorted()
        XCTAssertEqual(checked.count, 3)
        for key in checked {
            let name = String(key.dropFirst("dequantized.".count))
            let layout = try checkpoint.layout(name)
            XCTAssertEqual(layout.dtype, .bf16, name)
            XCTAssertEqual(layout.shape, try reference.info(key).shape, name)
            let same = try checkpoint.tensorBytes(name).withUnsafeBytes { $0.elementsEqual(try reference.rawBytes(key)) }
            XCTAssertTrue(same, "\(name): widened bytes differ from the reference")
        }
        XCTAssertEqual(try checkpoint.shape("model.layers.0.mlp.gate_proj.weight"), [160, 64])
        XCTAssertFalse(checkpoint.tensorNames.contains { $0.hasSuffix("_scale_inv") })
        XCTAssertTrue(checkpoint.storedTensorNames.contains("model.layers.0.mlp.down_proj.weight_scale_inv"))
        XCTAssertFalse(try checkpoint.tensorNames.contains { try checkpoint.layout($0).dtype.isFloat8 })
    }

    /// transformers' DeepseekV3ForCausalLM on the dequantized weights, in one prefill and
    /// token by token.
    func testWidenedCheckpointMatchesTransformers() throws {
        let checkpoint = try fp8Checkpoint()
        let description = try Architectures.describe(configData: try checkpoint.configData())
        let model = try MoEModel(description: description, tensors: checkpoint, precision: .float32)
        let (ids, reference) = try Fixtures.reference("deepseek_v3_fp8")
        let logits = try model.logits(ids)
        let prefill = maxAbsDifference(logits.values, reference.values)
        XCTAssertLessThanOrEqual(prefill, 1e-4, "prefill max |Δlogit| = \(prefill)")
        XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference))
        var cache = model.makeCache()
        var rows = [Float]()
        for id in ids { rows += try model.forward([id], cache: &cache).values }
        let decode = maxAbsDifference(rows, reference.values)
        XCTAssertLessThanOrEqual(decode, 1e-4, "decode max |Δlogit| = \(decode)")
    }

    // MARK: - Bad input

    /// A checkpoint of one FP8 weight `[rows, columns]` with the given scale (nil: none) and
    /// `quantization_config` (nil: none).
    private func checkpoint(rows: Int = 130, columns: Int = 8, scale: [Int]? = [2, 1], scaleDType: DType = .f32,
                            weightDType: DType = .f8e4m3, quantization: String? = #"{"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}"#) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-fp8-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        var writer = SafetensorsWriter()
        writer.add("w.weight", dtype: weightDType, shape: [rows, columns], bytes: [UInt8](repeating: 0x38, count: rows * columns))
        if let scale {
            let values = (0..<scale.reduce(1, *)).map { Float($0 + 1) }
            let bytes = scaleDType == .f32 ? values.withUnsafeBytes { Array($0) } : FloatEncoding.bytes(values, as: scaleDType)
            writer.add("w.weight_scale_inv", dtype: scaleDType, shape: scale, bytes: bytes)
        }
        try writer.write(to: folder.appendingPathComponent("model.safetensors"))
        let config = #"{"model_type": "deepseek_v3""# + (quantization.map { #", "quantization_config": \#($0)"# } ?? "") + "}"
        try Data(config.utf8).write(to: folder.appendingPathComponent("config.json"))
        return folder
    }

    private func open(_ folder: URL) throws -> CheckpointDirectory {
        try CheckpointDirectory(url: folder, derivations: [FP8BlockDequantization()])
    }

    func testAWellFormedEdgeBlockWidensWithEachBlocksScale() throws {
        // 130 rows: rows 0..<128 use scale 1, rows 128..<130 scale 2; code 0x38 is 1.0.
        let checkpoint = try open(try checkpoint())
        let values = try checkpoint.matrix("w.weight")
        XCTAssertEqual(values.rows, 130)
        XCTAssertEqual(values.values[127 * 8], 1)
        XCTAssertEqual(values.values[128 * 8], 2)
        XCTAssertEqual(checkpoint.tensorNames, ["w.weight"])
    }

    func testFP8WeightWithoutScalesIsRefusedByName() throws {
        let folder = try checkpoint(scale: nil)
        XCTAssertThrowsError(try open(folder)) { error in
            guard case let CheckpointError.malformedTensor(file, tensor, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(file, folder.path)
            XCTAssertEqual(tensor, "w.weight")
            XCTAssertTrue(reason.contains("w.weight_scale_inv"), reason)
        }
    }

    func testScalesOfTheWrongShapeAreRefusedByName() throws {
        let folder = try checkpoint(scale: [1, 1])
        XCTAssertThrowsError(try open(folder)) { error in
            XCTAssertEqual(error as? CheckpointError,
                           .wrongShape(file: folder.path, tensor: "w.weight_scale_inv", expected: [2, 1], actual: [1, 1]))
        }
        XCTAssertThrowsError(try open(try checkpoint(scale: [2, 1], scaleDType: .bf16))) { error in
            guard case let CheckpointError.unsupportedDType(_, tensor, dtype, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "w.weight_scale_inv")
            XCTAssertEqual(dtype, "BF16")
        }
    }

    func testMissingOrUnsupportedBlockSizeIsRefusedByName() throws {
        let cases: [(String?, String)] = [
            (nil, "no quantization_config"),
            (#"{"quant_method": "fp8", "fmt": "e4m3"}"#, "no weight_block_size"),
            (#"{"quant_method": "fp8", "weight_block_size": [128]}"#, "[128]"),
            (#"{"quant_method": "fp8", "weight_block_size": [0, 128]}"#, "[0, 128]"),
            (#"{"quant_method": "fp8", "fmt": "e5m2", "weight_block_size": [128, 128]}"#, "e5m2"),
            (#"{"quant_method": "mxfp4"}"#, "mxfp4"),
        ]
        for (quantization, mention) in cases {
            let folder = try checkpoint(quantization: quantization)
            XCTAssertThrowsError(try open(folder), mention) { error in
                guard case let CheckpointError.malformedTensor(file, tensor, reason) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(file, folder.path + "/config.json")
                XCTAssertEqual(tensor, "w.weight")
                XCTAssertTrue(reason.contains(mention), "'\(reason)' should mention '\(mention)'")
            }
        }
    }

    func testE5M2WeightsAreReadButNotWidened() throws {
        let folder = try checkpoint(weightDType: .f8e5m2)
        // The file parses (the dtype is known) …
        XCTAssertEqual(try SafetensorsFile(url: folder.appendingPathComponent("model.safetensors")).info("w.weight").dtype, .f8e5m2)
        // … but only E4M3 weights are widened.
        XCTAssertThrowsError(try open(folder)) { error in
            guard case let CheckpointError.unsupportedDType(_, tensor, dtype, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "w.weight")
            XCTAssertEqual(dtype, "F8_E5M2")
        }
    }

    func testTrulyUnknownDTypesStayRefused() throws {
        let folder = try checkpoint()
        let file = folder.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: file)
        let header = bytes.range(of: Data("F8_E4M3".utf8))!
        bytes.replaceSubrange(header, with: Data("F8_E4X3".utf8))
        try bytes.write(to: file)
        XCTAssertThrowsError(try SafetensorsFile(url: file)) { error in
            XCTAssertEqual(error as? CheckpointError, .unknownDType(file: "model.safetensors", tensor: "w.weight", dtype: "F8_E4X3"))
        }
    }
}
