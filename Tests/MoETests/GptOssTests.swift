import XCTest
@testable import MoE

/// gpt-oss against transformers 5.23's GptOssForCausalLM (Tests/Fixtures/gpt_oss, made by
/// tools/fixtures/make_fixtures.py --only gpt_oss): router bias, softmax over the top-k
/// logits, biased experts with the clamped SwiGLU, attention biases and sinks, a sliding
/// window of 4 on layer 0 and full attention on layer 1, YaRN without truncation.
final class GptOssTests: XCTestCase {
    let tolerance: Float = 1e-4
    let fixture = Fixtures.url("gpt_oss")

    func testPrefillAndTokenByTokenDecodeMatchTransformers() throws {
        let model = try MoEModel(directory: fixture)
        let (ids, reference) = try Fixtures.reference("gpt_oss")
        XCTAssertGreaterThan(ids.count, 4 * 4, "the input must run well past the sliding window")
        let logits = try model.logits(ids)
        let prefill = maxAbsDifference(logits.values, reference.values)
        XCTAssertLessThanOrEqual(prefill, tolerance, "prefill max |Δlogit| = \(prefill)")
        XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference))

        // One token at a time through the KV cache: the sliding layer must drop the same keys.
        var cache = model.makeCache()
        var rows = [Float]()
        for id in ids { rows += try model.forward([id], cache: &cache).values }
        let decoded = Matrix(rows: ids.count, columns: reference.columns, values: rows)
        let decode = maxAbsDifference(decoded.values, reference.values)
        XCTAssertLessThanOrEqual(decode, tolerance, "decode max |Δlogit| = \(decode)")
        XCTAssertEqual(argmaxPerRow(decoded), argmaxPerRow(reference))
        print("parity gpt_oss prefill max|Δ| = \(prefill), decode max|Δ| = \(decode)")
    }

    /// gpt_oss_wide: 64-wide experts, 8 of them, swiglu_limit 7 and YaRN truncated (the values
    /// llama.cpp hard-codes), the fixture the quantized plans and GGUF checks run on.
    func testWideFixturePrefillAndDecodeMatchTransformers() throws {
        let model = try MoEModel(directory: Fixtures.url("gpt_oss_wide"))
        let (ids, reference) = try Fixtures.reference("gpt_oss_wide")
        XCTAssertEqual(model.description.layers[0].moe?.expertFunction, ExpertFunction(activation: .clampedSwiGLU(alpha: 1.702, limit: 7), hasBias: true))
        XCTAssertEqual(model.description.rope.truncate, true)
        let logits = try model.logits(ids)
        XCTAssertLessThanOrEqual(maxAbsDifference(logits.values, reference.values), tolerance)
        XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference))
        var cache = model.makeCache()
        var rows = [Float]()
        for id in ids { rows += try model.forward([id], cache: &cache).values }
        XCTAssertLessThanOrEqual(maxAbsDifference(rows, reference.values), tolerance)
        XCTAssertEqual(argmaxPerRow(Matrix(rows: ids.count, columns: reference.columns, values: rows)), argmaxPerRow(reference))
    }

    /// Widened to f32 the model computes the same logits within the same tolerance.
    func testFloat32PrecisionMatchesTransformers() throws {
        let model = try MoEModel(directory: fixture, precision: .float32)
        let (ids, reference) = try Fixtures.reference("gpt_oss")
        XCTAssertLessThanOrEqual(maxAbsDifference(try model.logits(ids).values, reference.values), tolerance)
    }

    /// What config.json says, as the description holds it.
    func testDescriptionReadsEveryGptOssMechanism() throws {
        let d = try Architectures.describe(configData: try Data(contentsOf: fixture.appendingPathComponent("config.json")))
        XCTAssertEqual(d.family, .gptOss)
        XCTAssertEqual(d.attention.slidingWindow(layer: 0), 4)
        XCTAssertNil(d.attention.slidingWindow(layer: 1))
        XCTAssertTrue(d.attention.sinks)
        XCTAssertTrue(d.attention.qkvBias && d.attention.outputBias)
        XCTAssertEqual(d.attention.queryKeyHeadDim, 16, "head_dim is given explicitly, not hidden / heads = 8")
        XCTAssertEqual(d.rope.kind, "yarn")
        XCTAssertEqual(d.rope.truncate, false)
        XCTAssertEqual(d.rmsNormEpsilon, 1e-5)
        let moe = try XCTUnwrap(d.layers[0].moe)
        XCTAssertTrue(moe.routerBias)
        XCTAssertEqual(moe.expertFunction, ExpertFunction(activation: .clampedSwiGLU(alpha: 1.702, limit: 0.6), hasBias: true))
        XCTAssertEqual(d.names.router(1), "model.layers.1.mlp.router.weight")
        XCTAssertEqual(d.names.routerBias(1), "model.layers.1.mlp.router.bias")
        XCTAssertEqual(d.names.expertLayout, .fusedInterleavedGateUp)
        // Names stored before the field existed: gpt-oss's (router module `router`) were fused, the others per expert.
        for (names, layout) in [(d.names, ExpertTensorLayout.fusedInterleavedGateUp), (TensorNames(), .perExpert)] {
            var object = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(names)) as? [String: Any])
            XCTAssertEqual(object.removeValue(forKey: "expertLayout") as? String, layout.rawValue)
            XCTAssertEqual(try JSONDecoder().decode(TensorNames.self, from: JSONSerialization.data(withJSONObject: object)).expertLayout, layout)
        }
    }

    /// The per-expert tensors are the fused ones transposed and de-interleaved: gate row j is
    /// column 2j of `gate_up_proj[e]`, up row j column 2j+1, down is `down_proj[e]` transposed.
    func testPerExpertTensorsAreTheFusedOnesDeinterleaved() throws {
        let derived = try CheckpointDirectory(url: fixture)
        let stored = try CheckpointDirectory(url: fixture, derivations: [])
        let (e, l) = (3, 1)
        let prefix = "model.layers.\(l).mlp.experts."
        let gateUp = try stored.matrix(prefix + "gate_up_proj").values            // [4, 32, 32]
        let gateUpBias = try stored.matrix(prefix + "gate_up_proj_bias").values   // [4, 32]
        let down = try stored.matrix(prefix + "down_proj").values                 // [4, 16, 32]
        let downBias = try stored.matrix(prefix + "down_proj_bias").values        // [4, 32]
        let (d, f) = (32, 16)
        let gate = try derived.matrix(prefix + "\(e).gate_proj.weight", shape: [f, d]).values
        let up = try derived.matrix(prefix + "\(e).up_proj.weight", shape: [f, d]).values
        let downT = try derived.matrix(prefix + "\(e).down_proj.weight", shape: [d, f]).values
        for j in 0..<f {
            for i in 0..<d {
                XCTAssertEqual(gate[j * d + i], gateUp[(e * d + i) * 2 * f + 2 * j])
                XCTAssertEqual(up[j * d + i], gateUp[(e * d + i) * 2 * f + 2 * j + 1])
                XCTAssertEqual(downT[i * f + j], down[(e * f + j) * d + i])
            }
        }
        XCTAssertEqual(try derived.vector(prefix + "\(e).gate_proj.bias", count: f), (0..<f).map { gateUpBias[e * 2 * f + 2 * $0] })
        XCTAssertEqual(try derived.vector(prefix + "\(e).up_proj.bias", count: f), (0..<f).map { gateUpBias[e * 2 * f + 2 * $0 + 1] })
        XCTAssertEqual(try derived.vector(prefix + "\(e).down_proj.bias", count: d), Array(downBias[(e * d)..<((e + 1) * d)]))
        XCTAssertEqual(try derived.layout(prefix + "\(e).gate_proj.weight").dtype, .bf16, "kept in the stored dtype")
        XCTAssertFalse(derived.contains(prefix + "gate_up_proj"), "the fused tensors are presented only through the per-expert ones")
    }

    func testClampedSwiGLUAndSinkSoftmaxByHand() {
        // gate 2 clamps to 1 and up -3 to -1 (limit 1): (−1 + 1) · … = 0; gate −2 stays, up 0.5 stays.
        var gate = Matrix(rows: 1, columns: 3, values: [2, -2, 0.5])
        Functions.clampedSwiGLU(gate: &gate, up: Matrix(rows: 1, columns: 3, values: [-3, 0.5, 4]), alpha: 1.702, limit: 1)
        let s = { (x: Float) in 1 / (1 + exp(-1.702 * x)) }
        XCTAssertEqual(gate.values[0], 0, accuracy: 1e-7)
        XCTAssertEqual(gate.values[1], 1.5 * -2 * s(-2), accuracy: 1e-6)
        XCTAssertEqual(gate.values[2], 2 * 0.5 * s(0.5), accuracy: 1e-6)
        // A sink of log 2 next to logits 0, 0: each gets 1 / (1 + 1 + 2).
        var row: [Float] = [0, 0]
        row.withUnsafeMutableBufferPointer { Functions.softmax($0, sink: log(2)) }
        XCTAssertEqual(row[0], 0.25, accuracy: 1e-6)
        XCTAssertEqual(row[1], 0.25, accuracy: 1e-6)
    }

    // MARK: - Bad input

    /// The fixture's tensors with `change` applied to the stored ones, in a new folder.
    private func alteredCheckpoint(_ change: (inout [String: (DType, [Int])]) -> Void) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-gptoss-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("config.json"), to: folder.appendingPathComponent("config.json"))
        let stored = try SafetensorsFile(url: fixture.appendingPathComponent("model.safetensors"))
        var tensors = stored.tensors.mapValues { ($0.dtype, $0.shape) }
        change(&tensors)
        var writer = SafetensorsWriter()
        for (name, (dtype, shape)) in tensors.sorted(by: { $0.key < $1.key }) {
            writer.add(name, dtype: dtype, shape: shape, bytes: [UInt8](repeating: 0, count: shape.reduce(1, *) * dtype.byteSize))
        }
        try writer.write(to: folder.appendingPathComponent("model.safetensors"))
        return folder
    }

    private func assertMalformed(_ folder: URL, tensor: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try MoEModel(directory: folder), file: file, line: line) { error in
            guard case let CheckpointError.malformedTensor(path, name, reason) = error else {
                return XCTFail("expected malformedTensor, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(path, folder.path, "the error names the checkpoint", file: file, line: line)
            XCTAssertEqual(name, tensor, file: file, line: line)
            XCTAssertTrue(reason.contains(mentions), "'\(reason)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testFusedTensorsOfTheWrongShapeAreRefusedByName() throws {
        let m = "model.layers.1.mlp.experts."
        // Unchanged, the rewritten folder loads (so each refusal below is the change's doing).
        XCTAssertNoThrow(try MoEModel(directory: try alteredCheckpoint { _ in }))
        try assertMalformed(try alteredCheckpoint { $0[m + "gate_up_proj"] = (.bf16, [4, 32, 31]) },
                            tensor: m + "gate_up_proj", mentions: "2 × intermediate")
        try assertMalformed(try alteredCheckpoint { $0[m + "gate_up_proj"] = (.bf16, [4, 1024]) },
                            tensor: m + "gate_up_proj", mentions: "[4, 1024]")
        try assertMalformed(try alteredCheckpoint { $0[m + "down_proj"] = (.bf16, [3, 16, 32]) },
                            tensor: m + "down_proj", mentions: "[4, 16, 32]")
        try assertMalformed(try alteredCheckpoint { $0[m + "down_proj"] = (.bf16, [4, 32, 16]) },
                            tensor: m + "down_proj", mentions: "[4, 16, 32]")
        try assertMalformed(try alteredCheckpoint { $0[m + "gate_up_proj_bias"] = (.bf16, [4, 16]) },
                            tensor: m + "gate_up_proj_bias", mentions: "[4, 32]")
        try assertMalformed(try alteredCheckpoint { $0[m + "down_proj_bias"] = (.bf16, [5, 32]) },
                            tensor: m + "down_proj_bias", mentions: "[4, 32]")
        try assertMalformed(try alteredCheckpoint { $0[m + "down_proj_bias"] = nil },
                            tensor: m + "gate_up_proj", mentions: m + "down_proj_bias")
        try assertMalformed(try alteredCheckpoint { $0[m + "down_proj"] = (.i32, [4, 16, 32]) },
                            tensor: m + "down_proj", mentions: "I32")
    }

    /// Weights in another format (MXFP4's blocks and scales, presented by another derivation):
    /// the biases are still presented per expert from the fused bias tensors.
    func testBiasesArePresentedWhateverFormatTheWeightsAreIn() throws {
        let m = "model.layers.1.mlp.experts."
        let folder = try alteredCheckpoint { tensors in
            for name in tensors.keys where name.hasSuffix("experts.gate_up_proj") || name.hasSuffix("experts.down_proj") { tensors[name] = nil }
        }
        let checkpoint = try CheckpointDirectory(url: folder)
        XCTAssertEqual(try checkpoint.shape(m + "3.up_proj.bias"), [16])
        XCTAssertEqual(try checkpoint.shape(m + "3.down_proj.bias"), [32])
        XCTAssertFalse(checkpoint.contains(m + "3.up_proj.weight"))
        XCTAssertFalse(checkpoint.contains(m + "gate_up_proj_bias"))
        try assertMalformed(try alteredCheckpoint { tensors in
            for name in tensors.keys where name.hasSuffix("experts.gate_up_proj") || name.hasSuffix("experts.down_proj") { tensors[name] = nil }
            tensors[m + "down_proj_bias"] = (.bf16, [3, 32])
        }, tensor: m + "down_proj_bias", mentions: "[4, hidden]")
    }

    func testLayerTypesThatDoNotFitAreRefused() throws {
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("config.json"))) as! [String: Any]
        config["layer_types"] = ["sliding_attention"]
        XCTAssertThrowsError(try Architectures.describe(configData: try JSONSerialization.data(withJSONObject: config))) {
            XCTAssertTrue("\($0)".contains("layer_types"), "\($0)")
        }
        config["layer_types"] = ["sliding_attention", "chunked_attention"]
        XCTAssertThrowsError(try Architectures.describe(configData: try JSONSerialization.data(withJSONObject: config))) {
            XCTAssertTrue("\($0)".contains("chunked_attention"), "\($0)")
        }
    }
}
