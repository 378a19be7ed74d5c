import XCTest
@testable import ExpertStore
@testable import MoE

final class RecordCodecTests: XCTestCase {
    /// A record of three small tensors: f32 [2, 3], bf16 [5], i64 [1].
    func makeRecord() -> (bytes: [UInt8], layouts: [TensorLayout], payloads: [[UInt8]]) {
        let layouts = [TensorLayout(dtype: .f32, shape: [2, 3]), TensorLayout(dtype: .bf16, shape: [5]), TensorLayout(dtype: .i64, shape: [1])]
        let payloads: [[UInt8]] = [(0..<24).map { UInt8($0) }, (0..<10).map { UInt8(100 + $0) }, [7, 0, 0, 0, 0, 0, 0, 0]]
        var record = [UInt8](repeating: 0xAA, count: RecordCodec.recordLength(for: layouts))
        payloads[0].withUnsafeBytes { a in
            payloads[1].withUnsafeBytes { b in
                payloads[2].withUnsafeBytes { c in
                    record.withUnsafeMutableBytes { RecordCodec.encode(kind: .expertSwiGLU, tensors: layouts, sources: [a, b, c], into: $0) }
                }
            }
        }
        return (record, layouts, payloads)
    }

    func testLayoutIsTheDocumentedOne() {
        let (record, _, payloads) = makeRecord()
        // 96-byte header; payloads padded to 16: 24 → 32, 10 → 16, 8 → 16.
        XCTAssertEqual(record.count, 96 + 32 + 16 + 16)
        XCTAssertEqual(Array(record[0..<4]), Array("MKSR".utf8))
        XCTAssertEqual(Array(record[4..<12]), [1, 0, 2, 0, 3, 0, 0, 0])      // version 1, kind 2, 3 tensors
        XCTAssertEqual(Array(record[12..<24]), [2, 0, 2, 0, 2, 0, 0, 0, 3, 0, 0, 0])  // f32 (code 2), rank 2, [2, 3]
        XCTAssertEqual(Array(record[32..<40]), [4, 0, 1, 0, 5, 0, 0, 0])    // bf16 (code 4), rank 1, [5]
        XCTAssertEqual(Array(record[52..<60]), [5, 0, 1, 0, 1, 0, 0, 0])    // i64 (code 5), rank 1, [1]
        XCTAssertEqual(Array(record[72..<80]), [64, 0, 0, 0, 0, 0, 0, 0])   // payload length 64
        XCTAssertEqual(Array(record[96..<120]), payloads[0])
        XCTAssertEqual(Array(record[120..<128]), [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(Array(record[128..<138]), payloads[1])
        XCTAssertEqual(Array(record[144..<152]), payloads[2])
        // The checksum is CRC-32C of bytes 0..<92 followed by the payload, computed here bit by bit.
        let covered = Array(record[0..<92]) + Array(record[96...])
        let stored = UInt32(record[92]) | UInt32(record[93]) << 8 | UInt32(record[94]) << 16 | UInt32(record[95]) << 24
        XCTAssertEqual(stored, bitwiseCRC32C(covered))
    }

    func testDecodeRoundTrip() throws {
        let (record, layouts, payloads) = makeRecord()
        try record.withUnsafeBytes { bytes in
            let header = try RecordCodec.header(of: bytes, name: "test", store: "s")
            XCTAssertEqual(header.kind, .expertSwiGLU)
            XCTAssertEqual(header.tensors, layouts)
            XCTAssertEqual(header.payloadLength, 64)
            XCTAssertEqual((0..<3).map(header.payloadOffset(of:)), [0, 32, 48])
            try RecordCodec.verify(bytes, header: header, name: "test", store: "s")
            for i in 0..<3 { XCTAssertEqual(Array(RecordCodec.tensorBytes(bytes, header: header, index: i)), payloads[i]) }
        }
    }

    func testEveryFlippedByteIsCaught() throws {
        let (record, _, _) = makeRecord()
        for position in 0..<record.count {
            var damaged = record
            damaged[position] ^= 0x10
            let caught: Bool = damaged.withUnsafeBytes { bytes in
                do {
                    let header = try RecordCodec.header(of: bytes, name: "expert record (layer 1, expert 2 (original))", store: "s")
                    try RecordCodec.verify(bytes, header: header, name: "expert record (layer 1, expert 2 (original))", store: "s")
                    return false
                } catch let error as StoreError {
                    XCTAssertTrue(error.description.contains("layer 1, expert 2"), "\(error)")
                    return true
                } catch { return false }
            }
            XCTAssertTrue(caught, "flip at byte \(position) went unnoticed")
        }
    }

    func testHeaderErrorsAreSpecific() {
        let (record, _, _) = makeRecord()
        func error(_ bytes: [UInt8]) -> StoreError? {
            bytes.withUnsafeBytes { b in
                do { _ = try RecordCodec.header(of: b, name: "dense tensor 'x'", store: "/s"); return nil } catch { return error as? StoreError }
            }
        }
        XCTAssertEqual(error(Array(record[0..<50])), .corruptRecord(path: "/s", record: "dense tensor 'x'", reason: "50 bytes, shorter than the 96-byte header"))
        var newer = record
        newer[4] = 2
        XCTAssertEqual(error(newer), .unsupportedFormat(path: "/s", record: "dense tensor 'x'", version: 2))
        XCTAssertEqual(error(Array(record.dropLast(16))),
                       .corruptRecord(path: "/s", record: "dense tensor 'x'", reason: "header says 64 payload bytes but the record has 48"))
        var hugeShape = record
        for i in 16..<24 { hugeShape[i] = 0xFF }
        XCTAssertEqual(error(hugeShape), .corruptRecord(path: "/s", record: "dense tensor 'x'", reason: "tensor shapes do not fit the payload"))
    }
}

/// CRC-32C one bit at a time, straight from the definition: an independent reference.
func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ ((crc & 1) == 1 ? 0x82F6_3B78 : 0) }
    }
    return ~crc
}
