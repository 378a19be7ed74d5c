/// ggml's tensor element types that MoEKit writes, with their numbers in a GGUF tensor info.
///
/// Quantized types store a row as consecutive blocks of `blockSize` values; a block is
/// `blockBytes` bytes. A row's length must be a whole number of blocks.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q8_0 = 8
    case q4_K = 12
    case bf16 = 30

    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q8_0: return 32
        case .q4_K: return GGMLBlockEncoder.superBlockSize
        }
    }

    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18   // f16 d, 16 bytes of nibbles
        case .q4_1: return 20   // f16 d, f16 m, 16 bytes of nibbles
        case .q8_0: return 34   // f16 d, 32 int8
        case .q4_K: return 144  // f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
        }
    }

    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes of a tensor with these dimensions (innermost first).
    public func byteCount(_ dimensions: [Int]) -> Int {
        dimensions.dropFirst().reduce(dimensions[0] / blockSize * blockBytes, *)
    }

    /// The name llama.cpp prints (`q4_1`, `bf16`…).
    public var description: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .q4_0: return "q4_0"
        case .q4_1: return "q4_1"
        case .q8_0: return "q8_0"
        case .q4_K: return "q4_K"
        case .bf16: return "bf16"
        }
    }
}

/// Encoders of ggml's block formats, written from the format descriptions in ggml
/// (`ggml-common.h`) and gguf-py's `quants.py` so that the bytes match what
/// `llama-quantize` or gguf-py would write for the same values.
///
/// Every block holds 32 consecutive values of one row:
///
/// - **Q8_0**, 34 bytes: `d` (f16) then 32 signed bytes `q`; value = `d·q`.
///   `d = max|x| / 127`, `q = round(x / d)` (halves away from zero), computed with `d` before
///   it is rounded to f16.
/// - **Q4_0**, 18 bytes: `d` (f16) then 16 bytes of nibbles; value = `d·(q − 8)`.
///   `d = m / −8` where `m` is the value of largest magnitude (the first, on ties), and
///   `q = min(15, ⌊x/d + 8.5⌋)`.
/// - **Q4_1**, 20 bytes: `d` (f16), `m` (f16) then 16 bytes of nibbles; value = `d·q + m`.
///   `m = min x`, `d = (max x − min x) / 15`, `q = min(15, ⌊(x − m)/d + 0.5⌋)`.
///
/// Nibble order (Q4_0 and Q4_1): byte `j` holds value `j` in its low four bits and value
/// `j + 16` in its high four bits, for `j` in 0..<16 — the first half of the block in low
/// nibbles, the second half in high ones (not neighbours paired).
///
/// A zero block (`d = 0`) encodes every value as code 0 (Q4_0: 8), as ggml does.
///
/// Q4_K's 256-value super-blocks are in `GGMLBlockEncoder+Q4K.swift`.
public enum GGMLBlockEncoder {
    public static let blockSize = 32

    /// `values` (whole blocks, row-major) in `type`. F32/F16/BF16 round to nearest even.
    public static func encode(_ values: [Float], as type: GGMLType) -> [UInt8] {
        precondition(values.count % type.blockSize == 0, "\(values.count) values are not whole \(type) blocks")
        var out = [UInt8]()
        out.reserveCapacity(values.count / type.blockSize * type.blockBytes)
        switch type {
        case .f32: for v in values { out.appendLittleEndian(v.bitPattern) }
        case .f16: for v in values { out.appendLittleEndian(Float16(v).bitPattern) }
        case .bf16: for v in values { out.appendLittleEndian(bfloat16Bits(v)) }
        case .q4_K:
            for start in stride(from: 0, to: values.count, by: superBlockSize) {
                appendQ4_K(values[start..<(start + superBlockSize)], to: &out)
            }
        case .q8_0, .q4_0, .q4_1:
            for start in stride(from: 0, to: values.count, by: blockSize) {
                let block = values[start..<(start + blockSize)]
                switch type {
                case .q8_0: appendQ8_0(block, to: &out)
                case .q4_0: appendQ4_0(block, to: &out)
                default: appendQ4_1(block, to: &out)
                }
            }
        }
        return out
    }

    static func appendQ8_0(_ block: ArraySlice<Float>, to out: inout [UInt8]) {
        let amax = block.reduce(Float(0)) { Swift.max($0, abs($1)) }
        let d = amax / 127
        let inverse: Float = d == 0 ? 0 : 1 / d
        out.appendLittleEndian(Float16(d).bitPattern)
        for x in block {
            let q = (x * inverse).rounded(.toNearestOrAwayFromZero)
            out.append(UInt8(bitPattern: Int8(q)))
        }
    }

    static func appendQ4_0(_ block: ArraySlice<Float>, to out: inout [UInt8]) {
        var extreme: Float = 0
        for x in block where abs(x) > abs(extreme) { extreme = x }
        let d = extreme / -8
        let inverse: Float = d == 0 ? 0 : 1 / d
        out.appendLittleEndian(Float16(d).bitPattern)
        appendNibbles(block.map { x in UInt8(Swift.min(15, Swift.max(0, (x * inverse + 8.5).rounded(.towardZero)))) }, to: &out)
    }

    static func appendQ4_1(_ block: ArraySlice<Float>, to out: inout [UInt8]) {
        let low = block.min()!, high = block.max()!
        let d = (high - low) / 15
        let inverse: Float = d == 0 ? 0 : 1 / d
        out.appendLittleEndian(Float16(d).bitPattern)
        out.appendLittleEndian(Float16(low).bitPattern)
        appendNibbles(block.map { x in UInt8(Swift.min(15, Swift.max(0, ((x - low) * inverse + 0.5).rounded(.towardZero)))) }, to: &out)
    }

    /// A Q4_1 block from codes already on a grid: 32 codes in 0...15 with the grid's scale
    /// and minimum as f16 bit patterns. This is exact: the block dequantizes to
    /// `scale·code + minimum`, the values the codes stood for.
    public static func appendQ4_1(codes: ArraySlice<UInt8>, scaleBits: UInt16, minimumBits: UInt16, to out: inout [UInt8]) {
        precondition(codes.count == blockSize && codes.allSatisfy { $0 < 16 }, "a Q4_1 block is 32 codes below 16")
        out.appendLittleEndian(scaleBits)
        out.appendLittleEndian(minimumBits)
        appendNibbles(Array(codes), to: &out)
    }

    /// 32 codes below 16 as 16 bytes: code `j` low, code `j + 16` high.
    static func appendNibbles(_ codes: [UInt8], to out: inout [UInt8]) {
        for j in 0..<(blockSize / 2) { out.append(codes[j] | codes[j + blockSize / 2] << 4) }
    }

    /// The bfloat16 nearest `v` (ties to even), NaNs kept NaN (quiet), as ggml converts.
    public static func bfloat16Bits(_ v: Float) -> UInt16 {
        let bits = v.bitPattern
        if bits & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(bits >> 16) | 0x0040 }
        let rounded = UInt64(bits) + 0x7FFF + UInt64((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    // MARK: Decoding (what llama.cpp computes), for checks and tests

    /// The values of `count` elements of `type` stored in `bytes`.
    public static func decode(_ bytes: [UInt8], as type: GGMLType, count: Int) -> [Float] {
        precondition(count % type.blockSize == 0 && bytes.count >= count / type.blockSize * type.blockBytes)
        func half(_ i: Int) -> Float { Float(Float16(bitPattern: UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8)) }
        var out = [Float]()
        out.reserveCapacity(count)
        switch type {
        case .f32:
            for i in 0..<count {
                out.append(Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[4 * i + $1]) << (8 * $1) }))
            }
        case .f16: for i in 0..<count { out.append(half(2 * i)) }
        case .bf16: for i in 0..<count { out.append(Float(bitPattern: (UInt32(bytes[2 * i]) | UInt32(bytes[2 * i + 1]) << 8) << 16)) }
        case .q4_K:
            for b in 0..<(count / superBlockSize) { appendDecodedQ4_K(bytes[(b * 144)..<((b + 1) * 144)], to: &out) }
        case .q8_0, .q4_0, .q4_1:
            for b in 0..<(count / blockSize) {
                let base = b * type.blockBytes
                switch type {
                case .q8_0:
                    let d = half(base)
                    for j in 0..<blockSize { out.append(Float(Int8(bitPattern: bytes[base + 2 + j])) * d) }
                case .q4_0:
                    let d = half(base)
                    for j in 0..<blockSize { out.append(d * Float(Int(nibble(bytes, base + 2, j)) - 8)) }
                default:
                    let d = half(base), m = half(base + 2)
                    for j in 0..<blockSize { out.append(d * Float(nibble(bytes, base + 4, j)) + m) }
                }
            }
        }
        return out
    }

    /// Code `j` of a block's nibbles starting at `start`.
    static func nibble(_ bytes: [UInt8], _ start: Int, _ j: Int) -> UInt8 {
        j < blockSize / 2 ? bytes[start + j] & 0x0F : bytes[start + j - blockSize / 2] >> 4
    }
}
