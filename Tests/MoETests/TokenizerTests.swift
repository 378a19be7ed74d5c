import Foundation
import XCTest
@testable import MoE

/// Token ids against Hugging Face `tokenizers` 0.23.3 (tools/fixtures/make_tokenizer_reference.py).
final class TokenizerTests: XCTestCase {
    struct Row: Decodable { var text_index: Int; var ids: [Int]; var decoded: String }

    static let repository = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
    static let tokenizerFiles = [
        "moekit-tiny": repository.appendingPathComponent("models/moekit-tiny/tokenizer.json"),
        "qwen2style": Fixtures.url("tokenizer/qwen2style/tokenizer.json"),
    ]

    func load() throws -> (texts: [String], reference: [String: [Row]]) {
        let texts = try JSONDecoder().decode([String].self, from: Data(contentsOf: Fixtures.url("tokenizer/texts.json")))
        let reference = try JSONDecoder().decode([String: [Row]].self, from: Data(contentsOf: Fixtures.url("tokenizer/reference.json")))
        return (texts, reference)
    }

    func testIdsMatchHuggingFaceTokenizers() throws {
        let (texts, reference) = try load()
        XCTAssertEqual(Set(reference.keys), Set(Self.tokenizerFiles.keys))
        var compared = 0
        for (name, url) in Self.tokenizerFiles {
            let tokenizer = try Tokenizer(contentsOf: url)
            for row in try XCTUnwrap(reference[name]) {
                let text = texts[row.text_index]
                XCTAssertEqual(tokenizer.encode(text), row.ids, "\(name): text \(row.text_index) \(text.prefix(40).debugDescription)")
                XCTAssertEqual(tokenizer.decode(row.ids), row.decoded, "\(name): decode of text \(row.text_index)")
                compared += 1
            }
        }
        XCTAssertEqual(compared, 2 * texts.count)
    }

    func testDecodeInvertsEncode() throws {
        let (texts, _) = try load()
        for url in Self.tokenizerFiles.values {
            let tokenizer = try Tokenizer(contentsOf: url)
            for text in texts { XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text) }
        }
    }

    func testStreamingDetokenizerEqualsDecode() throws {
        let (texts, _) = try load()
        let tokenizer = try Tokenizer(contentsOf: Self.tokenizerFiles["moekit-tiny"]!)
        for text in texts {
            var stream = StreamingDetokenizer(tokenizer: tokenizer)
            var pieces = ""
            for id in tokenizer.encode(text) {
                let piece = stream.append(id)
                XCTAssertFalse(piece.contains("\u{FFFD}"), "a partial character was emitted for \(text.prefix(30))")
                pieces += piece
            }
            pieces += stream.flush()
            XCTAssertEqual(pieces, text)
        }
    }

    func testSpecialTokens() throws {
        let tokenizer = try Tokenizer(contentsOf: Self.tokenizerFiles["moekit-tiny"]!)
        let end = try XCTUnwrap(tokenizer.tokenID("<|endoftext|>"))
        XCTAssertEqual(end, 0)
        XCTAssertTrue(tokenizer.specialTokenIDs.contains(end))
        XCTAssertEqual(tokenizer.encode("<|endoftext|>"), [end])
        XCTAssertEqual(tokenizer.decode([end] + tokenizer.encode("hi"), skipSpecialTokens: true), "hi")
        XCTAssertEqual(tokenizer.vocabularySize, 8192)
    }

    func testErrorsNameTheFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(String, String, String)] = [
            ("malformed.json", "{\"model\": ", "not a JSON object"),
            ("wordpiece.json", #"{"model": {"type": "WordPiece", "vocab": {}}}"#, "WordPiece"),
            ("badmerge.json", #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}"#, "merge"),
            ("pattern.json", #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}}"#, "pattern"),
        ]
        for (name, content, fragment) in cases {
            let url = directory.appendingPathComponent(name)
            try Data(content.utf8).write(to: url)
            XCTAssertThrowsError(try Tokenizer(contentsOf: url)) { error in
                let text = String(describing: error)
                XCTAssertTrue(text.contains(name) && text.contains(fragment), text)
            }
        }
        XCTAssertThrowsError(try Tokenizer(contentsOf: directory.appendingPathComponent("absent.json"))) {
            XCTAssertTrue(String(describing: $0).contains("absent.json"))
        }
    }

    func testCompletePrefix() {
        // "é" = C3 A9; "😀" = F0 9F 98 80
        XCTAssertEqual(StreamingDetokenizer.completePrefixLength([0x61, 0xC3]), 1)
        XCTAssertEqual(StreamingDetokenizer.completePrefixLength([0x61, 0xC3, 0xA9]), 3)
        XCTAssertEqual(StreamingDetokenizer.completePrefixLength([0xF0, 0x9F, 0x98]), 0)
        XCTAssertEqual(StreamingDetokenizer.completePrefixLength([0xF0, 0x9F, 0x98, 0x80]), 4)
    }
}
