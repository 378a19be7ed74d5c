// The encoding copies storage arrays byte for byte, so it is little-endian only by construction.
#if _endian(big)
#error("QuantizedMatrix encoding assumes a little-endian host")
#endif

/// A self-describing byte record of a quantized matrix, for the expert store.
///
/// Layout (little-endian), 16-byte header then the three storage arrays:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `MKQM` |
/// | 4 | 1 | encoding version (1) |
/// | 5 | 1 | bits |
/// | 6 | 2 | group size |
/// | 8 | 4 | rows |
/// | 12 | 4 | columns |
/// | 16 | 4·words | packed codes (`UInt32`) |
/// | … | 2·groups | scales (half-precision bits) |
/// | … | 2·groups | minimums (half-precision bits) |
///
/// The record is exactly `headerSize + byteCount` bytes; records can be concatenated because
/// the header determines the length (a `QuantizedExpert` is three of them).
extension QuantizedMatrix {
    public static let magic: [UInt8] = Array("MKQM".utf8)
    public static let encodingVersion: UInt8 = 1
    public static let headerSize = 16

    public var encodedByteCount: Int { Self.headerSize + byteCount }

    public func encoded() -> [UInt8] {
        precondition(rows <= Int(UInt32.max) && columns <= Int(UInt32.max), "matrix too large for the record header")
        var out = [UInt8]()
        out.reserveCapacity(encodedByteCount)
        out += Self.magic
        out.append(Self.encodingVersion)
        out.append(UInt8(bits))
        withUnsafeBytes(of: UInt16(groupSize).littleEndian) { out += $0 }
        withUnsafeBytes(of: UInt32(rows).littleEndian) { out += $0 }
        withUnsafeBytes(of: UInt32(columns).littleEndian) { out += $0 }
        packed.withUnsafeBytes { out += $0 }
        scales.withUnsafeBytes { out += $0 }
        minimums.withUnsafeBytes { out += $0 }
        return out
    }

    /// Reads a record that is exactly one quantized matrix.
    public init(decoding bytes: some Collection<UInt8>) throws(QuantizationError) {
        let array = Array(bytes)
        let (matrix, end) = try Self.decode(array, at: 0)
        guard end == array.count else { throw .malformedEncoding("\(array.count - end) trailing bytes after the matrix") }
        self = matrix
    }

    /// Reads one record starting at `offset`; returns it and the offset just past it.
    static func decode(_ bytes: [UInt8], at offset: Int) throws(QuantizationError) -> (QuantizedMatrix, Int) {
        guard bytes.count - offset >= headerSize else {
            throw .malformedEncoding("\(bytes.count - offset) bytes is shorter than the \(headerSize)-byte header")
        }
        guard Array(bytes[offset..<(offset + 4)]) == magic else { throw .malformedEncoding("bad magic") }
        guard bytes[offset + 4] == encodingVersion else {
            throw .malformedEncoding("unsupported encoding version \(bytes[offset + 4])")
        }
        func integer(at position: Int, size: Int) -> Int {
            (0..<size).reduce(0) { $0 | Int(bytes[offset + position + $1]) << (8 * $1) }
        }
        let format = try QuantizationFormat(bits: Int(bytes[offset + 5]), groupSize: integer(at: 6, size: 2))
        let rows = integer(at: 8, size: 4), columns = integer(at: 12, size: 4)
        guard columns % format.groupSize == 0 else {
            throw .columnsNotDivisibleByGroupSize(columns: columns, groupSize: format.groupSize)
        }
        // rows, columns < 2^32, so the products below cannot overflow a 64-bit Int before the
        // multiplication by bits is checked.
        let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard !overflow, count <= Int.max / 8 else { throw .malformedEncoding("shape \(rows)x\(columns) is too large") }
        let words = BitPacking.wordCount(codes: count, bits: format.bits)
        let groups = count / format.groupSize
        let payload = 4 * words + 4 * groups
        var position = offset + headerSize
        guard bytes.count - position >= payload else {
            throw .malformedEncoding("truncated: \(rows)x\(columns) at \(format) needs \(payload) payload bytes, \(bytes.count - position) remain")
        }
        func read<T: FixedWidthInteger>(_ n: Int, as _: T.Type) -> [T] {
            let size = n * MemoryLayout<T>.size
            defer { position += size }
            return [T](unsafeUninitializedCapacity: n) { buffer, initialized in
                bytes.withUnsafeBytes { raw in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[position..<(position + size)]))
                }
                initialized = n
            }
        }
        let packed = read(words, as: UInt32.self)
        let scales = read(groups, as: UInt16.self)
        let minimums = read(groups, as: UInt16.self)
        let matrix = try QuantizedMatrix(rows: rows, columns: columns, format: format,
                                         packed: packed, scales: scales, minimums: minimums)
        return (matrix, position)
    }
}
