import Foundation

// GGUF stores every number little-endian; the writer copies host integers and floats as they
// are, so it is little-endian only by construction (as the safetensors writer and store are).
#if _endian(big)
#error("GGUFWriter assumes a little-endian host")
#endif

/// Writes a GGUF version 3 file, the container llama.cpp, Ollama and gguf-py read.
///
/// Layout, all little-endian:
///
/// | part | contents |
/// |---|---|
/// | header | magic `GGUF`, version `u32` = 3, tensor count `u64`, metadata count `u64` |
/// | metadata | per entry: key (string), value type `u32`, value |
/// | tensor infos | per tensor: name (string), dimension count `u32`, dimensions `u64` each (innermost first), type `u32`, data offset `u64` |
/// | padding | zeros up to a multiple of `alignment` |
/// | data | each tensor's bytes at its offset from the data start, every offset a multiple of `alignment` |
///
/// A string is a `u64` byte length then UTF-8 bytes, no terminator. An array is the element
/// type `u32`, the count `u64`, then the elements.
///
/// Tensor dimensions follow ggml's order, **innermost first**: a row-major matrix of `rows`
/// rows and `columns` columns is `[columns, rows]` (ne[0] is the length of a row). Bytes are
/// pulled from each tensor's `source` only while the data section is written, so a file far
/// larger than memory can be written holding about one tensor at a time.
public struct GGUFWriter {
    /// Hands a tensor's encoded bytes to `emit`, in one or more pieces, in order.
    public typealias Source = (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let version: UInt32 = 3
    /// llama.cpp's default; written as `general.alignment` so readers need not assume it.
    public static let defaultAlignment = 32

    struct Tensor {
        var name: String
        var type: GGMLType
        var dimensions: [Int]
        var source: Source
        var byteCount: Int
    }

    public let alignment: Int
    private(set) var metadata: [(key: String, value: GGUFValue)] = []
    private var keys = Set<String>()
    private(set) var tensors: [Tensor] = []
    private var tensorNames = Set<String>()

    /// `alignment` is recorded as `general.alignment` (the first metadata entry).
    public init(alignment: Int = GGUFWriter.defaultAlignment) {
        precondition(alignment > 0 && alignment % 8 == 0, "GGUF alignment must be a positive multiple of 8")
        self.alignment = alignment
        metadata.append((key: "general.alignment", value: .uint32(UInt32(alignment))))
        keys.insert("general.alignment")
    }

    /// Adds one metadata entry; keys are unique, written in the order they were added.
    public mutating func set(_ key: String, _ value: GGUFValue) throws(GGUFError) {
        guard !key.isEmpty else { throw .emptyKey }
        guard keys.insert(key).inserted else { throw .duplicateKey(key) }
        if case let .array(elementType, elements) = value {
            if elementType == .array { throw .nestedArray(key: key) }
            if let bad = elements.first(where: { $0.type != elementType }) {
                throw .mixedArray(key: key, expected: elementType, found: bad.type)
            }
        }
        metadata.append((key: key, value: value))
    }

    /// Adds a tensor: `dimensions` innermost first (`[columns, rows]` for a matrix); its
    /// first dimension must be whole blocks of `type`. The source must emit exactly
    /// `type.byteCount(dimensions)` bytes when the file is written.
    public mutating func addTensor(_ name: String, type: GGMLType, dimensions: [Int], source: @escaping Source) throws(GGUFError) {
        guard tensorNames.insert(name).inserted else { throw .duplicateTensor(name) }
        guard (1...4).contains(dimensions.count), dimensions.allSatisfy({ $0 > 0 }) else {
            throw .badDimensions(tensor: name, dimensions: dimensions)
        }
        guard dimensions[0] % type.blockSize == 0 else {
            throw .rowNotWholeBlocks(tensor: name, type: type, rowLength: dimensions[0])
        }
        tensors.append(Tensor(name: name, type: type, dimensions: dimensions, source: source, byteCount: type.byteCount(dimensions)))
    }

    /// A tensor whose encoded bytes are already in memory.
    public mutating func addTensor(_ name: String, type: GGMLType, dimensions: [Int], bytes: [UInt8]) throws(GGUFError) {
        try addTensor(name, type: type, dimensions: dimensions) { emit in try bytes.withUnsafeBytes { try emit($0) } }
    }

    public var tensorCount: Int { tensors.count }
    /// Bytes of tensor data (each tensor's encoded bytes, without alignment padding).
    public var tensorBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    /// Everything before the data section: header, metadata, tensor infos and the padding
    /// that aligns the data start.
    public func headerBytes() -> [UInt8] {
        var out = Self.magic
        out.appendLittleEndian(Self.version)
        out.appendLittleEndian(UInt64(tensors.count))
        out.appendLittleEndian(UInt64(metadata.count))
        for (key, value) in metadata {
            out.appendGGUFString(key)
            out.appendLittleEndian(value.type.rawValue)
            value.encode(into: &out)
        }
        var offset = 0
        for tensor in tensors {
            out.appendGGUFString(tensor.name)
            out.appendLittleEndian(UInt32(tensor.dimensions.count))
            for d in tensor.dimensions { out.appendLittleEndian(UInt64(d)) }
            out.appendLittleEndian(tensor.type.rawValue)
            out.appendLittleEndian(UInt64(offset))
            offset += padded(tensor.byteCount)
        }
        out += [UInt8](repeating: 0, count: padded(out.count) - out.count)
        return out
    }

    func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Writes the file to `url.partial` and renames it into place, so a reader never sees
    /// half a file under the final name. Errors thrown by a source pass through unchanged.
    public func write(to url: URL) throws {
        let partial = url.appendingPathExtension("partial")
        let fm = FileManager.default
        try? fm.removeItem(at: partial)
        guard fm.createFile(atPath: partial.path, contents: nil), let handle = FileHandle(forWritingAtPath: partial.path) else {
            throw GGUFError.cannotWrite(file: partial.path, reason: "cannot create the file")
        }
        func append(_ bytes: UnsafeRawBufferPointer) throws(GGUFError) {
            do { try handle.write(contentsOf: Data(bytes)) } catch {
                throw .cannotWrite(file: partial.path, reason: error.localizedDescription)
            }
        }
        do {
            defer { try? handle.close() }
            try headerBytes().withUnsafeBytes { try append($0) }
            let zeros = [UInt8](repeating: 0, count: alignment)
            for tensor in tensors {
                var written = 0
                try tensor.source { bytes in
                    written += bytes.count
                    guard written <= tensor.byteCount else {
                        throw GGUFError.wrongByteCount(tensor: tensor.name, expected: tensor.byteCount, actual: written)
                    }
                    if bytes.count > 0 { try append(bytes) }
                }
                guard written == tensor.byteCount else {
                    throw GGUFError.wrongByteCount(tensor: tensor.name, expected: tensor.byteCount, actual: written)
                }
                let padding = padded(written) - written
                try zeros.withUnsafeBytes { try append(UnsafeRawBufferPointer(rebasing: $0[0..<padding])) }
            }
            do { try handle.synchronize() } catch {
                throw GGUFError.cannotWrite(file: partial.path, reason: error.localizedDescription)
            }
        } catch {
            try? fm.removeItem(at: partial)
            throw error
        }
        try? fm.removeItem(at: url)
        do { try fm.moveItem(at: partial, to: url) } catch {
            throw GGUFError.cannotWrite(file: url.path, reason: "cannot rename \(partial.lastPathComponent) into place: \(error.localizedDescription)")
        }
    }
}

/// The type tag of a GGUF metadata value (gguf's `GGUFValueType`).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12
}

/// One GGUF metadata value. Arrays are homogeneous and not nested (llama.cpp reads no
/// nested arrays); the writer checks both.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFValueType, [GGUFValue])

    public static func strings(_ values: [String]) -> GGUFValue { .array(.string, values.map(GGUFValue.string)) }
    public static func int32s(_ values: [Int32]) -> GGUFValue { .array(.int32, values.map(GGUFValue.int32)) }

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// The value's bytes, without its type tag.
    func encode(into out: inout [UInt8]) {
        switch self {
        case let .uint8(v): out.append(v)
        case let .int8(v): out.append(UInt8(bitPattern: v))
        case let .uint16(v): out.appendLittleEndian(v)
        case let .int16(v): out.appendLittleEndian(v)
        case let .uint32(v): out.appendLittleEndian(v)
        case let .int32(v): out.appendLittleEndian(v)
        case let .uint64(v): out.appendLittleEndian(v)
        case let .int64(v): out.appendLittleEndian(v)
        case let .float32(v): out.appendLittleEndian(v.bitPattern)
        case let .float64(v): out.appendLittleEndian(v.bitPattern)
        case let .bool(v): out.append(v ? 1 : 0)
        case let .string(s): out.appendGGUFString(s)
        case let .array(elementType, elements):
            out.appendLittleEndian(elementType.rawValue)
            out.appendLittleEndian(UInt64(elements.count))
            for element in elements { element.encode(into: &out) }
        }
    }
}

public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case emptyKey
    case duplicateKey(String)
    case nestedArray(key: String)
    case mixedArray(key: String, expected: GGUFValueType, found: GGUFValueType)
    case duplicateTensor(String)
    case badDimensions(tensor: String, dimensions: [Int])
    case rowNotWholeBlocks(tensor: String, type: GGMLType, rowLength: Int)
    case wrongByteCount(tensor: String, expected: Int, actual: Int)
    case cannotWrite(file: String, reason: String)

    public var description: String {
        switch self {
        case .emptyKey: return "GGUF writer: a metadata key is empty"
        case let .duplicateKey(key): return "GGUF writer: metadata key '\(key)' was set twice"
        case let .nestedArray(key): return "GGUF writer: '\(key)' is an array of arrays, which llama.cpp does not read"
        case let .mixedArray(key, expected, found): return "GGUF writer: array '\(key)' of \(expected) holds a \(found)"
        case let .duplicateTensor(name): return "GGUF writer: tensor '\(name)' was added twice"
        case let .badDimensions(name, dimensions): return "GGUF writer: tensor '\(name)' has dimensions \(dimensions); GGUF holds 1 to 4 positive ones"
        case let .rowNotWholeBlocks(name, type, length):
            return "GGUF writer: tensor '\(name)' has rows of \(length) values, not whole \(type) blocks of \(type.blockSize)"
        case let .wrongByteCount(name, expected, actual):
            return "GGUF writer: tensor '\(name)' needs \(expected) bytes for its shape and type but its source gave \(actual)"
        case let .cannotWrite(file, reason): return "\(file): cannot write: \(reason)"
        }
    }
}

extension [UInt8] {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendGGUFString(_ s: String) {
        let utf8 = Array(s.utf8)
        appendLittleEndian(UInt64(utf8.count))
        append(contentsOf: utf8)
    }
}
