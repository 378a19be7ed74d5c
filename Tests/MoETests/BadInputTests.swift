import XCTest
@testable import MoE

/// Corrupt or inconsistent inputs must give a typed error naming the file and the problem.
final class BadInputTests: XCTestCase {
    func expectError(_ file: String, contains fragments: [String], line: UInt = #line,
                     _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: #filePath, line: line) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains(file), "error '\(text)' does not name \(file)", line: line)
            for fragment in fragments {
                XCTAssertTrue(text.contains(fragment), "error '\(text)' lacks '\(fragment)'", line: line)
            }
        }
    }

    func open(_ name: String) throws { _ = try SafetensorsFile(url: Fixtures.url("bad/\(name)")) }

    func testValidControlFileReads() throws {
        let file = try SafetensorsFile(url: Fixtures.url("bad/valid.safetensors"))
        XCTAssertEqual(try file.floats("a"), [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
        XCTAssertEqual(try file.floats("b"), [1, -2, 3, -4])
        XCTAssertEqual(try file.integers("c"), [7, -9])
        XCTAssertEqual(try file.matrix("a"), Matrix(rows: 2, columns: 3, values: [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]))
    }

    func testTruncatedFile() {
        expectError("truncated.safetensors", contains: ["truncated"]) { try open("truncated.safetensors") }
    }

    func testLyingOffsets() {
        expectError("lying_offsets.safetensors", contains: ["'c'", "1040"]) { try open("lying_offsets.safetensors") }
    }

    func testOverlappingTensors() {
        expectError("overlapping.safetensors", contains: ["overlaps"]) { try open("overlapping.safetensors") }
    }

    func testUnknownDType() {
        expectError("unknown_dtype.safetensors", contains: ["'b'", "Q7"]) { try open("unknown_dtype.safetensors") }
    }

    func testLengthMismatch() {
        expectError("wrong_length.safetensors", contains: ["'a'", "16", "24"]) { try open("wrong_length.safetensors") }
    }

    func testMalformedHeaderJSON() {
        expectError("bad_header_json.safetensors", contains: ["JSON"]) { try open("bad_header_json.safetensors") }
    }

    func testHeaderLengthBeyondFile() {
        expectError("huge_header_len.safetensors", contains: ["header length 256007"]) { try open("huge_header_len.safetensors") }
    }

    func testMissingFile() {
        expectError("no_such.safetensors", contains: ["cannot read"]) { try open("no_such.safetensors") }
    }

    func testUnknownModelType() throws {
        let data = try Data(contentsOf: Fixtures.url("bad/unknown_model_type/config.json"))
        expectError("config.json", contains: ["bogus_moe", "qwen3_moe", "deepseek_v3", "mixtral"]) {
            _ = try Architectures.describe(configData: data, file: Fixtures.url("bad/unknown_model_type/config.json").path)
        }
    }

    func testMalformedConfig() {
        expectError("config.json", contains: ["not valid JSON"]) {
            _ = try Architectures.describe(configData: Data("{\"model_type\": ".utf8), file: "config.json")
        }
        expectError("config.json", contains: ["num_attention_heads"]) {
            _ = try Architectures.describe(configData: Data(#"{"model_type": "qwen3_moe", "vocab_size": 8, "hidden_size": 4, "num_hidden_layers": 1, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8}"#.utf8), file: "config.json")
        }
    }

    func testMissingTensor() {
        expectError("missing_tensor", contains: ["model.layers.1.mlp.experts.5.up_proj.weight", "missing"]) {
            _ = try MoEModel(directory: Fixtures.url("bad/missing_tensor"))
        }
    }

    func testWrongShape() {
        expectError("wrong_shape", contains: ["model.layers.0.mlp.experts.3.down_proj.weight", "[32, 64]", "[64, 32]"]) {
            _ = try MoEModel(directory: Fixtures.url("bad/wrong_shape"))
        }
    }

    func testEmptyPromptAndBadTokens() throws {
        let model = try MoEModel(directory: Fixtures.url("olmoe"))
        XCTAssertThrowsError(try model.logits([])) { XCTAssertEqual($0 as? ModelError, .emptyInput) }
        XCTAssertThrowsError(try model.logits([1, 512])) {
            XCTAssertEqual($0 as? ModelError, .tokenOutOfRange(token: 512, vocabularySize: 512))
        }
        XCTAssertThrowsError(try Generator(model: model).generate(prompt: [], maxTokens: 4)) {
            XCTAssertEqual($0 as? ModelError, .emptyInput)
        }
    }

    func testPromptLongerThanContext() throws {
        let model = try MoEModel(directory: Fixtures.url("olmoe"))
        let limit = model.description.maxPositionEmbeddings
        XCTAssertThrowsError(try model.logits([Int](repeating: 3, count: limit + 1))) {
            XCTAssertEqual($0 as? ModelError, .contextOverflow(requested: limit + 1, limit: limit))
        }
        // Decoding stops at the context limit instead of overflowing it: after a prompt of
        // limit - 2 tokens, two more fit in the cache, and the logits at the last position
        // still predict a third.
        let produced = try Generator(model: model).generate(prompt: [Int](repeating: 3, count: limit - 2), maxTokens: 10)
        XCTAssertEqual(produced.count, 3)
    }
}
