import XCTest
@testable import ExpertStore

/// CRC-32C against published vectors: the "check" value of the CRC catalogue and the
/// iSCSI examples of RFC 3720 appendix B.4 (the RFC lists the CRC bytes little-endian).
final class CRC32CTests: XCTestCase {
    static let vectors: [(String, [UInt8], UInt32)] = [
        ("empty", [], 0x0000_0000),
        ("123456789", Array("123456789".utf8), 0xE306_9283),
        ("32 zero bytes", [UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ("32 0xFF bytes", [UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ("32 incrementing bytes", (0..<32).map { UInt8($0) }, 0x46DD_794E),
        ("32 decrementing bytes", (0..<32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        ("iSCSI read command PDU", [
            0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
            0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ], 0xD996_3A56),
    ]

    func testPublishedVectors() {
        for (name, bytes, expected) in Self.vectors {
            XCTAssertEqual(CRC32C.checksum(bytes), expected, name)
            XCTAssertEqual(bytes.withUnsafeBytes { CRC32C.portableChecksum($0) }, expected, "portable: \(name)")
        }
    }

    /// Any split of the input, continued, gives the CRC of the whole.
    func testContinuationEqualsWhole() {
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        let whole = CRC32C.checksum(bytes)
        XCTAssertEqual(whole, 0x2262_0404)
        for split in 0...bytes.count {
            XCTAssertEqual(CRC32C.checksum(Array(bytes[split...]), continuing: CRC32C.checksum(Array(bytes[..<split]))), whole, "split at \(split)")
        }
    }

    /// The hardware and table paths agree on every length and misalignment.
    func testHardwareAndPortablePathsAgree() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<4099).map { _ in UInt8.random(in: 0...255, using: &generator) }
        data.withUnsafeBytes { all in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4090] {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    XCTAssertEqual(CRC32C.checksum(slice), CRC32C.portableChecksum(slice), "start \(start) length \(length)")
                }
            }
        }
        print("CRC32C hardware path: \(CRC32C.usesHardware)")
    }
}
