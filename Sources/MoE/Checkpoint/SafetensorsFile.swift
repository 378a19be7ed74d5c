import CKernels
import Foundation

/// Where one tensor lives inside a safetensors file.
public struct TensorInfo: Sendable, Equatable {
    public var dtype: DType
    public var shape: [Int]
    /// Byte range relative to the start of the file.
    public var byteRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// One `.safetensors` file, memory-mapped, with a header validated up front:
/// every tensor's offsets lie inside the data section, its dtype is known, its
/// byte length equals shape × dtype size, and no two tensors overlap.
public final class SafetensorsFile: Sendable {
    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let file: MappedFile

    public convenience init(url: URL) throws { try self.init(path: url.path) }

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let name = (path as NSString).lastPathComponent
        guard file.size >= 8 else {
            throw CheckpointError.truncated(file: name, reason: "\(file.size) bytes, shorter than the 8-byte header length")
        }
        let headerLength = file.bytes(0..<8).loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(file.size - 8) else {
            throw CheckpointError.truncated(file: name, reason: "header length \(headerLength) exceeds the \(file.size - 8) bytes after it")
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = Data(file.bytes(8..<dataStart))
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerBytes)
        } catch {
            throw CheckpointError.malformedHeader(file: name, reason: "header is not valid JSON")
        }
        guard let entries = json as? [String: Any] else {
            throw CheckpointError.malformedHeader(file: name, reason: "header is not a JSON object")
        }
        let dataSize = file.size - dataStart
        var tensors = [String: TensorInfo]()
        var metadata = [String: String]()
        for (key, value) in entries {
            if key == "__metadata__" {
                if let dict = value as? [String: Any] {
                    for (k, v) in dict { metadata[k] = v as? String ?? "\(v)" }
                }
                continue
            }
            tensors[key] = try Self.parseEntry(key, value, file: name, dataStart: dataStart, dataSize: dataSize)
        }
        // No two tensors may share bytes.
        let ordered = tensors.sorted { ($0.value.byteRange.lowerBound, $0.key) < ($1.value.byteRange.lowerBound, $1.key) }
        for (previous, next) in zip(ordered, ordered.dropFirst())
        where next.value.byteRange.lowerBound < previous.value.byteRange.upperBound && !next.value.byteRange.isEmpty {
            throw CheckpointError.overlappingTensors(file: name, tensor: next.key, other: previous.key)
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    private static func parseEntry(_ key: String, _ value: Any, file: String, dataStart: Int, dataSize: Int) throws -> TensorInfo {
        guard let entry = value as? [String: Any] else {
            throw CheckpointError.malformedHeader(file: file, reason: "entry for '\(key)' is not an object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw CheckpointError.malformedHeader(file: file, reason: "tensor '\(key)' has no dtype")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw CheckpointError.unknownDType(file: file, tensor: key, dtype: dtypeName)
        }
        guard let shapeValues = entry["shape"] as? [Any], let shape = Self.integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
            throw CheckpointError.malformedHeader(file: file, reason: "tensor '\(key)' has no valid shape")
        }
        guard let offsetValues = entry["data_offsets"] as? [Any], let offsets = Self.integers(offsetValues), offsets.count == 2 else {
            throw CheckpointError.malformedHeader(file: file, reason: "tensor '\(key)' has no valid data_offsets")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin >= 0, begin <= end else {
            throw CheckpointError.badOffsets(file: file, tensor: key, reason: "data_offsets [\(begin), \(end)] are not an increasing pair")
        }
        guard end <= dataSize else {
            throw CheckpointError.badOffsets(file: file, tensor: key,
                reason: "data_offsets [\(begin), \(end)] end past the data section of \(dataSize) bytes (file truncated or offsets wrong)")
        }
        let elements = shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 })
        let expected = elements == Int.max ? Int.max : elements * dtype.byteSize
        guard expected == end - begin else {
            throw CheckpointError.lengthMismatch(file: file, tensor: key, expectedBytes: expected, actualBytes: end - begin)
        }
        return TensorInfo(dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end))
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out = [Int]()
        for v in values {
            guard let n = v as? Int else { return nil }
            out.append(n)
        }
        return out
    }

    public var fileName: String { (path as NSString).lastPathComponent }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else { throw CheckpointError.missingTensor(tensor: name, location: fileName) }
        return info
    }

    /// The tensor's raw little-endian bytes, straight from the memory map.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        file.bytes(try info(name).byteRange)
    }

    /// Bytes `range` of the file (file-relative, as `TensorInfo.byteRange`), from the map.
    func mappedBytes(_ range: Range<Int>) -> UnsafeRawBufferPointer { file.bytes(range) }

    /// A 2-D BF16/F16 tensor copied out of the map as stored; nil for other dtypes or ranks.
    public func halfMatrix(_ name: String) throws -> HalfMatrix? {
        let info = try info(name)
        return TensorDecoding.halfMatrix(file.bytes(info.byteRange), dtype: info.dtype, shape: info.shape)
    }

    /// The tensor widened to Float, flattened to `[shape[0], rest]` (a 1-D tensor becomes one row).
    public func matrix(_ name: String) throws -> Matrix {
        let info = try info(name)
        return try TensorDecoding.matrix(file.bytes(info.byteRange), dtype: info.dtype, shape: info.shape, file: fileName, tensor: name)
    }

    /// All elements widened to Float.
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        return try TensorDecoding.floats(file.bytes(info.byteRange), dtype: info.dtype, count: info.elementCount, file: fileName, tensor: name)
    }

    /// Integer tensors (token ids in reference files).
    public func integers(_ name: String) throws -> [Int] {
        let info = try info(name)
        let bytes = file.bytes(info.byteRange)
        switch info.dtype {
        case .i64: return (0..<info.elementCount).map { Int(bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .i32: return (0..<info.elementCount).map { Int(bytes.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        default:
            throw CheckpointError.unsupportedDType(file: fileName, tensor: name, dtype: info.dtype.rawValue, purpose: "integers")
        }
    }
}
