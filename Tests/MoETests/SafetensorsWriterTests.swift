import Foundation
import XCTest
@testable import MoE

final class SafetensorsWriterTests: XCTestCase {
    /// Byte for byte what `safetensors.numpy.save` 0.8.0 writes for
    /// {"b.w": f16 [1, -2], "a": f32 arange(6).reshape(2, 3) + 0.5, "c": i64 [7]}, metadata {"format": "pt"}.
    static let referenceHex = "c8000000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c2263223a7b226474797065223a22493634222c227368617065223a5b315d2c22646174615f6f666673657473223a5b302c385d7d2c2261223a7b226474797065223a22463332222c227368617065223a5b322c335d2c22646174615f6f666673657473223a5b382c33325d7d2c22622e77223a7b226474797065223a22463136222c227368617065223a5b325d2c22646174615f6f666673657473223a5b33322c33365d7d7d202007000000000000000000003f0000c03f0000204000006040000090400000b040003c00c0"

    func testMatchesTheReferenceLibraryByteForByte() throws {
        var writer = SafetensorsWriter()
        let a = (0..<6).map { Float($0) + 0.5 }
        writer.add("b.w", dtype: .f16, shape: [2], bytes: [0x00, 0x3C, 0x00, 0xC0])
        writer.add("a", dtype: .f32, shape: [2, 3]) { emit in try a.withUnsafeBytes { try emit($0) } }
        writer.add("c", dtype: .i64, shape: [1], bytes: [7, 0, 0, 0, 0, 0, 0, 0])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("writer-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try writer.write(to: url)
        let written = try Data(contentsOf: url)
        XCTAssertEqual(written.map { String(format: "%02x", $0) }.joined(), Self.referenceHex)
        XCTAssertEqual((try writer.header().count - 8) % 8, 0)
        // And our own reader takes it back.
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.floats("a"), a)
        XCTAssertEqual(try file.floats("b.w"), [1, -2])
        XCTAssertEqual(try file.integers("c"), [7])
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".partial"))
    }

    func testWrongSourceLengthAndDuplicatesAreRefused() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("writer-\(UUID().uuidString).safetensors")
        var writer = SafetensorsWriter()
        writer.add("x", dtype: .f32, shape: [2], bytes: [0, 0, 0, 0])
        XCTAssertThrowsError(try writer.write(to: url)) {
            XCTAssertEqual($0 as? SafetensorsWriterError, .wrongByteCount(name: "x", expected: 8, actual: 4))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".partial"))
        var twice = SafetensorsWriter()
        twice.add("x", dtype: .u8, shape: [1], bytes: [1])
        twice.add("x", dtype: .u8, shape: [1], bytes: [2])
        XCTAssertThrowsError(try twice.header()) { XCTAssertEqual($0 as? SafetensorsWriterError, .duplicateTensor(name: "x")) }
    }

    func testNamesAreEscapedAsJSON() throws {
        XCTAssertEqual(SafetensorsWriter.quoted("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"")
    }
}
