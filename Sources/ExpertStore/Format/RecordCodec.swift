import MoE

/// What a record holds.
public enum RecordKind: UInt16, Sendable {
    /// One dense tensor (key: its checkpoint name).
    case denseTensor = 1
    /// An expert's gate, up and down projections, in that order, then (for families whose
    /// experts have them, gpt-oss) the gate, up and down biases (key: `ExpertKey`).
    case expertSwiGLU = 2
    /// A novice's constant output vector `[hidden]` (MoNE).
    case expertConstant = 3
    /// An expert's three projections quantized, each an encoded `QuantizedMatrix` (U8 bytes).
    case expertQuantized = 4
    /// A dense tensor a plan quantized, one encoded `QuantizedMatrix` (U8 bytes; key:
    /// `name#variant`, see `ExpertStore.denseVariantKey`).
    case denseQuantized = 5
    /// An expert's gate, up and down projections kept in MXFP4 as the checkpoint stored them
    /// (gpt-oss), each U8 `[rows, columns/32, 17]` in `MXFP4Matrix`'s layout (key: `ExpertKey`).
    case expertMXFP4 = 6
}

/// The dtype and shape of one tensor inside a record.
public struct TensorLayout: Equatable, Sendable {
    public var dtype: DType
    public var shape: [Int]

    public init(dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.byteSize }
}

/// The layout of a store record: a 96-byte little-endian header (160 bytes for more than
/// three tensors), then the payload.
///
///     0   magic "MKSR"                       4 bytes
///     4   format version (1)                 u16
///     6   kind (RecordKind)                  u16
///     8   tensor count (1...6)               u16
///     10  zero                               u16
///     12  3 tensor descriptors × 20 bytes:   dtype code u16, rank u16 (0...4), 4 × u32 dims
///     72  payload length                     u64
///     80  zero                               12 bytes
///     92  CRC-32C of bytes 0..<92, of bytes 96..<header length, and of the payload
///     96  only with 4...6 tensors: descriptors 4...6 × 20 bytes, zero-padded to byte 160
///     96 or 160  payload: each tensor's raw little-endian bytes, each padded with zeros to 16 bytes
///
/// Records of up to three tensors (every record before gpt-oss's biased experts) are laid out
/// exactly as before the extension. 96 and 160 are multiples of 16 and LMDB places large values at the start of a page plus 16, so
/// every tensor of a record that LMDB stores on its own pages is 16-byte aligned in the map
/// and f32 weights can be used where they lie. The checksum covers the header too, so a
/// flipped shape is caught like a flipped weight.
public struct RecordHeader: Equatable, Sendable {
    public var kind: RecordKind
    public var tensors: [TensorLayout]
    public var payloadLength: Int
    public var checksum: UInt32

    /// The header length of a record of up to three tensors (the shortest header).
    public static let size = 96
    public static let version: UInt16 = 1
    static let magic: [UInt8] = Array("MKSR".utf8)
    static let maxTensors = 6
    /// Descriptors that fit in the 96-byte header; the rest go in the extension after it.
    static let inlineDescriptors = 3
    static let maxRank = 4
    static let checksumOffset = 92

    /// Header bytes for a record of `tensorCount` tensors.
    static func length(tensorCount: Int) -> Int { tensorCount <= inlineDescriptors ? size : 160 }

    /// Where descriptor `index` lies in the header.
    static func descriptorOffset(_ index: Int) -> Int {
        index < inlineDescriptors ? 12 + 20 * index : size + 20 * (index - inlineDescriptors)
    }

    /// This record's header bytes.
    public var headerLength: Int { Self.length(tensorCount: tensors.count) }

    /// Where tensor `i` starts, relative to the start of the payload.
    public func payloadOffset(of index: Int) -> Int {
        tensors[..<index].reduce(0) { $0 + Self.padded($1.byteCount) }
    }

    public var recordLength: Int { headerLength + payloadLength }

    static func padded(_ n: Int) -> Int { (n + 15) / 16 * 16 }

    static func payloadLength(for tensors: [TensorLayout]) -> Int { tensors.reduce(0) { $0 + padded($1.byteCount) } }
}

/// Encodes and decodes records. `name` in every error says which record it is, so that
/// a user can tell which expert or tensor is damaged.
enum RecordCodec {
    /// Writes a complete record into `target` (exactly `recordLength(for:)` bytes): the
    /// header, then each tensor's bytes from `sources`, zero padding, and the checksum.
    static func encode(kind: RecordKind, tensors: [TensorLayout], sources: [UnsafeRawBufferPointer],
                       into target: UnsafeMutableRawBufferPointer) {
        precondition(tensors.count == sources.count && (1...RecordHeader.maxTensors).contains(tensors.count))
        let payloadLength = RecordHeader.payloadLength(for: tensors)
        let headerLength = RecordHeader.length(tensorCount: tensors.count)
        precondition(target.count == headerLength + payloadLength)
        target.initializeMemory(as: UInt8.self, repeating: 0)
        for (i, byte) in RecordHeader.magic.enumerated() { target[i] = byte }
        target.storeBytes(of: RecordHeader.version.littleEndian, toByteOffset: 4, as: UInt16.self)
        target.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        target.storeBytes(of: UInt16(tensors.count).littleEndian, toByteOffset: 8, as: UInt16.self)
        var offset = headerLength
        for (i, layout) in tensors.enumerated() {
            precondition(layout.shape.count <= RecordHeader.maxRank && sources[i].count == layout.byteCount)
            let d = RecordHeader.descriptorOffset(i)
            target.storeBytes(of: dtypeCode(layout.dtype).littleEndian, toByteOffset: d, as: UInt16.self)
            target.storeBytes(of: UInt16(layout.shape.count).littleEndian, toByteOffset: d + 2, as: UInt16.self)
            for (j, dim) in layout.shape.enumerated() {
                target.storeBytes(of: UInt32(dim).littleEndian, toByteOffset: d + 4 + 4 * j, as: UInt32.self)
            }
            if layout.byteCount > 0 {
                UnsafeMutableRawBufferPointer(rebasing: target[offset..<(offset + layout.byteCount)]).copyMemory(from: sources[i])
            }
            offset += RecordHeader.padded(layout.byteCount)
        }
        target.storeBytes(of: UInt64(payloadLength).littleEndian, toByteOffset: 72, as: UInt64.self)
        let readable = UnsafeRawBufferPointer(target)
        let crc = checksum(readable, headerLength: headerLength, payloadLength: payloadLength)
        target.storeBytes(of: crc.littleEndian, toByteOffset: RecordHeader.checksumOffset, as: UInt32.self)
    }

    static func recordLength(for tensors: [TensorLayout]) -> Int {
        RecordHeader.length(tensorCount: tensors.count) + RecordHeader.payloadLength(for: tensors)
    }

    /// Parses and validates the header (not the checksum: see `verify`).
    static func header(of record: UnsafeRawBufferPointer, name: String, store: String) throws -> RecordHeader {
        func corrupt(_ reason: String) -> StoreError { .corruptRecord(path: store, record: name, reason: reason) }
        guard record.count >= RecordHeader.size else {
            throw corrupt("\(record.count) bytes, shorter than the \(RecordHeader.size)-byte header")
        }
        guard Array(record[0..<4]) == RecordHeader.magic else { throw corrupt("bad magic bytes") }
        let version = UInt16(littleEndian: record.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard version == RecordHeader.version else {
            throw StoreError.unsupportedFormat(path: store, record: name, version: Int(version))
        }
        let kindCode = UInt16(littleEndian: record.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        guard let kind = RecordKind(rawValue: kindCode) else { throw corrupt("unknown record kind \(kindCode)") }
        let count = Int(UInt16(littleEndian: record.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
        guard (1...RecordHeader.maxTensors).contains(count) else {
            throw corrupt("tensor count \(count) is not 1...\(RecordHeader.maxTensors)")
        }
        let headerLength = RecordHeader.length(tensorCount: count)
        guard record.count >= headerLength else {
            throw corrupt("\(record.count) bytes, shorter than the \(headerLength)-byte header of \(count) tensors")
        }
        var tensors = [TensorLayout]()
        for i in 0..<count {
            let d = RecordHeader.descriptorOffset(i)
            let code = UInt16(littleEndian: record.loadUnaligned(fromByteOffset: d, as: UInt16.self))
            guard let dtype = dtype(code: code) else { throw corrupt("tensor \(i) has unknown dtype code \(code)") }
            let rank = Int(UInt16(littleEndian: record.loadUnaligned(fromByteOffset: d + 2, as: UInt16.self)))
            guard rank <= RecordHeader.maxRank else { throw corrupt("tensor \(i) has rank \(rank) > \(RecordHeader.maxRank)") }
            let shape = (0..<rank).map { Int(UInt32(littleEndian: record.loadUnaligned(fromByteOffset: d + 4 + 4 * $0, as: UInt32.self))) }
            tensors.append(TensorLayout(dtype: dtype, shape: shape))
        }
        let payloadLength = UInt64(littleEndian: record.loadUnaligned(fromByteOffset: 72, as: UInt64.self))
        guard payloadLength == UInt64(record.count - headerLength) else {
            throw corrupt("header says \(payloadLength) payload bytes but the record has \(record.count - headerLength)")
        }
        // Four u32 dimensions can overflow Int; a damaged header must throw, not trap.
        var expected = 0
        for layout in tensors {
            let (elements, overflow) = layout.shape.reduce((1, false)) { acc, dim in
                let (p, o) = acc.0.multipliedReportingOverflow(by: dim)
                return (p, acc.1 || o)
            }
            guard !overflow, elements <= Int(payloadLength) else { throw corrupt("tensor shapes do not fit the payload") }
            expected += RecordHeader.padded(elements * layout.dtype.byteSize)
        }
        guard expected == Int(payloadLength) else {
            throw corrupt("tensor shapes need \(expected) payload bytes but the header says \(payloadLength)")
        }
        let stored = UInt32(littleEndian: record.loadUnaligned(fromByteOffset: RecordHeader.checksumOffset, as: UInt32.self))
        return RecordHeader(kind: kind, tensors: tensors, payloadLength: Int(payloadLength), checksum: stored)
    }

    /// Checks the record's CRC-32C against its header.
    static func verify(_ record: UnsafeRawBufferPointer, header: RecordHeader, name: String, store: String) throws {
        let computed = checksum(record, headerLength: header.headerLength, payloadLength: header.payloadLength)
        guard computed == header.checksum else {
            throw StoreError.checksumMismatch(path: store, record: name, stored: header.checksum, computed: computed)
        }
    }

    /// The raw bytes of tensor `index` inside `record`.
    static func tensorBytes(_ record: UnsafeRawBufferPointer, header: RecordHeader, index: Int) -> UnsafeRawBufferPointer {
        let start = header.headerLength + header.payloadOffset(of: index)
        return UnsafeRawBufferPointer(rebasing: record[start..<(start + header.tensors[index].byteCount)])
    }

    private static func checksum(_ record: UnsafeRawBufferPointer, headerLength: Int, payloadLength: Int) -> UInt32 {
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[0..<RecordHeader.checksumOffset]))
        // The descriptor extension of records with more than three tensors (empty otherwise).
        crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[RecordHeader.size..<headerLength]), continuing: crc)
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[headerLength..<(headerLength + payloadLength)]),
                               continuing: crc)
    }

    /// Stable on-disk codes; `DType`'s raw values are checkpoint strings, not a format.
    static func dtypeCode(_ dtype: DType) -> UInt16 {
        switch dtype {
        case .f64: return 1
        case .f32: return 2
        case .f16: return 3
        case .bf16: return 4
        case .i64: return 5
        case .i32: return 6
        case .i16: return 7
        case .i8: return 8
        case .u8: return 9
        case .bool: return 10
        case .u32: return 11
        case .f8e4m3: return 12
        case .f8e5m2: return 13
        case .f8e8m0: return 14
        }
    }

    static func dtype(code: UInt16) -> DType? { DType.allCases.first { dtypeCode($0) == code } }
}
