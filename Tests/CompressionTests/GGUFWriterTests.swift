import Foundation
import XCTest
@testable import MoE

/// The GGUF container read back by a reader written here from the format description (not
/// the writer's code), and the ggml block encoders against blocks computed by hand.
final class GGUFWriterTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func testHeaderMetadataAndTensorTableReadBack() throws {
        var writer = GGUFWriter()
        try writer.set("general.architecture", .string("qwen3moe"))
        try writer.set("t.u8", .uint8(200))
        try writer.set("t.i8", .int8(-100))
        try writer.set("t.u16", .uint16(60_000))
        try writer.set("t.i16", .int16(-30_000))
        try writer.set("t.u32", .uint32(4_000_000_000))
        try writer.set("t.i32", .int32(-2_000_000_000))
        try writer.set("t.u64", .uint64(1 << 40))
        try writer.set("t.i64", .int64(-(1 << 40)))
        try writer.set("t.f32", .float32(1.5))
        try writer.set("t.f64", .float64(-0.25))
        try writer.set("t.bool", .bool(true))
        try writer.set("t.strings", .strings(["a", "ü", ""]))
        try writer.set("t.ints", .int32s([1, -2, 3]))
        let small: [Float] = [1, 2, 3]   // 12 bytes: the next tensor's offset must be padded to 32
        try writer.addTensor("small", type: .f32, dimensions: [3], bytes: GGMLBlockEncoder.encode(small, as: .f32))
        let matrix = (0..<64).map { Float($0) - 31.5 }
        let q8 = GGMLBlockEncoder.encode(matrix, as: .q8_0)
        // Streamed in two pieces, as a source emitting one row at a time would.
        try writer.addTensor("m", type: .q8_0, dimensions: [32, 2]) { emit in
            try q8.withUnsafeBytes { raw in
                try emit(UnsafeRawBufferPointer(rebasing: raw[0..<34]))
                try emit(UnsafeRawBufferPointer(rebasing: raw[34...]))
            }
        }
        let url = directory.appendingPathComponent("t.gguf")
        try writer.write(to: url)

        let file = try MiniGGUF(Array(Data(contentsOf: url)))
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.metadata.map(\.key), ["general.alignment", "general.architecture", "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32",
                                                  "t.u64", "t.i64", "t.f32", "t.f64", "t.bool", "t.strings", "t.ints"])
        let values = Dictionary(uniqueKeysWithValues: file.metadata.map { ($0.key, $0.value) })
        XCTAssertEqual(values["general.alignment"], "u32:32")
        XCTAssertEqual(values["general.architecture"], "str:qwen3moe")
        XCTAssertEqual(values["t.u8"], "u8:200")
        XCTAssertEqual(values["t.i8"], "i8:-100")
        XCTAssertEqual(values["t.u16"], "u16:60000")
        XCTAssertEqual(values["t.i16"], "i16:-30000")
        XCTAssertEqual(values["t.u32"], "u32:4000000000")
        XCTAssertEqual(values["t.i32"], "i32:-2000000000")
        XCTAssertEqual(values["t.u64"], "u64:1099511627776")
        XCTAssertEqual(values["t.i64"], "i64:-1099511627776")
        XCTAssertEqual(values["t.f32"], "f32:1.5")
        XCTAssertEqual(values["t.f64"], "f64:-0.25")
        XCTAssertEqual(values["t.bool"], "bool:true")
        XCTAssertEqual(values["t.strings"], "[str:a,str:ü,str:]")
        XCTAssertEqual(values["t.ints"], "[i32:1,i32:-2,i32:3]")

        XCTAssertEqual(file.tensors.map(\.name), ["small", "m"])
        XCTAssertEqual(file.tensors.map(\.dimensions), [[3], [32, 2]])
        XCTAssertEqual(file.tensors.map(\.type), [0, 8])
        XCTAssertEqual(file.tensors.map(\.offset), [0, 32])
        XCTAssertEqual(file.dataStart % 32, 0)
        XCTAssertEqual(file.bytes(of: "small", count: 12), GGMLBlockEncoder.encode(small, as: .f32))
        XCTAssertEqual(file.bytes(of: "m", count: 68), q8)
        XCTAssertEqual(file.bytes.count, file.dataStart + 32 + 96, "each tensor is padded to the alignment")
    }

    func testWriterRejectsWhatGGUFCannotHold() throws {
        var writer = GGUFWriter()
        try writer.set("k", .bool(false))
        XCTAssertThrowsError(try writer.set("k", .bool(true))) { XCTAssertEqual($0 as? GGUFError, .duplicateKey("k")) }
        XCTAssertThrowsError(try writer.set("mixed", .array(.int32, [.int32(1), .uint8(2)]))) {
            XCTAssertEqual($0 as? GGUFError, .mixedArray(key: "mixed", expected: .int32, found: .uint8))
        }
        XCTAssertThrowsError(try writer.set("nested", .array(.array, []))) { XCTAssertEqual($0 as? GGUFError, .nestedArray(key: "nested")) }
        XCTAssertThrowsError(try writer.addTensor("q", type: .q4_1, dimensions: [48, 2], bytes: [])) {
            XCTAssertEqual($0 as? GGUFError, .rowNotWholeBlocks(tensor: "q", type: .q4_1, rowLength: 48))
        }
        try writer.addTensor("short", type: .f32, dimensions: [4], bytes: [0, 0, 0, 0])
        XCTAssertThrowsError(try writer.addTensor("short", type: .f32, dimensions: [1], bytes: [0, 0, 0, 0])) {
            XCTAssertEqual($0 as? GGUFError, .duplicateTensor("short"))
        }
        let url = directory.appendingPathComponent("bad.gguf")
        XCTAssertThrowsError(try writer.write(to: url)) {
            XCTAssertEqual($0 as? GGUFError, .wrongByteCount(tensor: "short", expected: 16, actual: 4))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".partial"), "a failed write leaves nothing behind")
    }

    /// Codes 0…15 in the first half of the block and 15…0 in the second, so a layout that
    /// paired neighbouring values in a byte would give different bytes.
    static let codes: [UInt8] = (0..<16).map(UInt8.init) + (0..<16).map { 15 - UInt8($0) }
    static let nibbles: [UInt8] = (0..<16).map { UInt8($0) | (15 - UInt8($0)) << 4 }

    func testQ4_1Block() {
        // x = 0.25·c − 1: min −1, max 2.75, d = 3.75 / 15 = 0.25 exactly, codes c.
        let x = Self.codes.map { 0.25 * Float($0) - 1 }
        let block = GGMLBlockEncoder.encode(x, as: .q4_1)
        XCTAssertEqual(block, [0x00, 0x34, 0x00, 0xBC] + Self.nibbles)   // d = 0.25 (f16 0x3400), m = −1 (0xBC00)
        XCTAssertEqual(GGMLBlockEncoder.decode(block, as: .q4_1, count: 32), x)
        var fromCodes = [UInt8]()
        GGMLBlockEncoder.appendQ4_1(codes: Self.codes[...], scaleBits: 0x3400, minimumBits: 0xBC00, to: &fromCodes)
        XCTAssertEqual(fromCodes, block)
    }

    func testQ4_0Block() {
        // x = 0.5·(8 − c): the largest magnitude is 4 (c = 0), so d = 4 / −8 = −0.5 and the
        // code of x is ⌊x/d + 8.5⌋ = c.
        let x = Self.codes.map { 0.5 * (8 - Float($0)) }
        let block = GGMLBlockEncoder.encode(x, as: .q4_0)
        XCTAssertEqual(block, [0x00, 0xB8] + Self.nibbles)   // d = −0.5 (f16 0xB800)
        XCTAssertEqual(GGMLBlockEncoder.decode(block, as: .q4_0, count: 32), x)
    }

    func testQ8_0BlockRoundsHalvesAwayFromZero() {
        // max |x| = 127, so d = 1 and q = round(x): 2.5 → 3 and −2.5 → −3 (ties to even would give ±2).
        var x = [Float](repeating: 0, count: 32)
        (x[0], x[1], x[2], x[3], x[4], x[31]) = (127, 2.5, -2.5, 0.49, -0.51, -127)
        let block = GGMLBlockEncoder.encode(x, as: .q8_0)
        var expected: [UInt8] = [0x00, 0x3C, 127, 3, UInt8(bitPattern: -3), 0, UInt8(bitPattern: -1)]
        expected += [UInt8](repeating: 0, count: 26) + [UInt8(bitPattern: -127)]
        XCTAssertEqual(block, expected)

        // A scale that is not a power of two: x = j − 16, d = 16/127 rounded to f16 is
        // 1032·2⁻¹³ (0x3008); q = round(x·127/16) uses the unrounded d.
        let ramp = (0..<32).map { Float($0) - 16 }
        let rampBlock = GGMLBlockEncoder.encode(ramp, as: .q8_0)
        XCTAssertEqual(Array(rampBlock[0..<2]), [0x08, 0x30])
        XCTAssertEqual(Int8(bitPattern: rampBlock[2]), -127)       // −16 · 127/16
        XCTAssertEqual(Int8(bitPattern: rampBlock[2 + 17]), 8)     // 1 · 7.9375
        XCTAssertEqual(Int8(bitPattern: rampBlock[2 + 18]), 16)    // 2 · 15.875
        XCTAssertEqual(Int8(bitPattern: rampBlock[2 + 31]), 119)   // 15 · 119.0625
    }

    func testZeroBlocksAndBFloat16() {
        let zeros = [Float](repeating: 0, count: 32)
        XCTAssertEqual(GGMLBlockEncoder.encode(zeros, as: .q8_0), [UInt8](repeating: 0, count: 34))
        // Q4_0's d = 0 / −8 is −0 (f16 0x8000), as in ggml; every code is 8.
        XCTAssertEqual(GGMLBlockEncoder.encode(zeros, as: .q4_0), [0x00, 0x80] + [UInt8](repeating: 0x88, count: 16))
        XCTAssertEqual(GGMLBlockEncoder.encode(zeros, as: .q4_1), [UInt8](repeating: 0, count: 20))
        // 1 + 2⁻⁸ is halfway between two bfloat16 values: ties to even keeps 1.0 (0x3F80);
        // 1 + 3·2⁻⁸ rounds up to 1 + 2⁻⁶ (0x3F82). NaN stays NaN.
        XCTAssertEqual(GGMLBlockEncoder.bfloat16Bits(1 + 1 / 256), 0x3F80)
        XCTAssertEqual(GGMLBlockEncoder.bfloat16Bits(1 + 3 / 256), 0x3F82)
        XCTAssertTrue(Float(bitPattern: UInt32(GGMLBlockEncoder.bfloat16Bits(.nan)) << 16).isNaN)
        XCTAssertEqual(GGMLType.q4_1.byteCount([64, 3]), 2 * 20 * 3)
        XCTAssertEqual(GGMLType.bf16.byteCount([5, 2]), 20)
    }
}

/// A minimal GGUF reader, enough to check the writer: metadata values rendered as
/// `type:value` strings (arrays as `[…]`), tensor infos, and the data section's start.
struct MiniGGUF {
    struct Info { var name: String; var dimensions: [Int]; var type: UInt32; var offset: Int }
    let bytes: [UInt8]
    var version: UInt32 = 0
    var metadata: [(key: String, value: String)] = []
    var tensors: [Info] = []
    var dataStart = 0

    init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        var p = 0
        func int(_ size: Int) -> UInt64 {
            defer { p += size }
            return (0..<size).reduce(UInt64(0)) { $0 | UInt64(bytes[p + $1]) << (8 * UInt64($1)) }
        }
        func string() -> String {
            let n = Int(int(8))
            defer { p += n }
            return String(decoding: bytes[p..<(p + n)], as: UTF8.self)
        }
        func value(_ type: UInt32) -> String {
            switch type {
            case 0: return "u8:\(int(1))"
            case 1: return "i8:\(Int8(truncatingIfNeeded: int(1)))"
            case 2: return "u16:\(int(2))"
            case 3: return "i16:\(Int16(truncatingIfNeeded: int(2)))"
            case 4: return "u32:\(int(4))"
            case 5: return "i32:\(Int32(truncatingIfNeeded: int(4)))"
            case 6: return "f32:\(Float(bitPattern: UInt32(int(4))))"
            case 7: return "bool:\(int(1) != 0)"
            case 8: return "str:\(string())"
            case 9:
                let elementType = UInt32(int(4)), count = Int(int(8))
                return "[" + (0..<count).map { _ in value(elementType) }.joined(separator: ",") + "]"
            case 10: return "u64:\(int(8))"
            case 11: return "i64:\(Int64(bitPattern: int(8)))"
            case 12: return "f64:\(Double(bitPattern: int(8)))"
            default: return "?\(type)"
            }
        }
        guard Array(bytes[0..<4]) == Array("GGUF".utf8) else { throw CocoaError(.fileReadCorruptFile) }
        p = 4
        version = UInt32(int(4))
        let tensorCount = Int(int(8)), metadataCount = Int(int(8))
        var alignment = 32
        for _ in 0..<metadataCount {
            let key = string()
            let text = value(UInt32(int(4)))
            if key == "general.alignment", let a = Int(text.dropFirst(4)) { alignment = a }
            metadata.append((key, text))
        }
        for _ in 0..<tensorCount {
            let name = string()
            let dims = (0..<Int(int(4))).map { _ in Int(int(8)) }
            let type = UInt32(int(4))
            tensors.append(Info(name: name, dimensions: dims, type: type, offset: Int(int(8))))
        }
        dataStart = (p + alignment - 1) / alignment * alignment
    }

    func info(_ name: String) -> Info? { tensors.first { $0.name == name } }

    func bytes(of name: String, count: Int) -> [UInt8] {
        let start = dataStart + info(name)!.offset
        return Array(bytes[start..<(start + count)])
    }

    /// A metadata value as rendered (`u32:4`…).
    subscript(key: String) -> String? { metadata.first { $0.key == key }?.value }
}
