import Foundation

/// Writes a `.safetensors` file byte for byte the way Hugging Face's `safetensors`
/// library does: tensors ordered by dtype (largest first, in the library's dtype order)
/// then by name, the header JSON compact and in that same order, `__metadata__` first,
/// and the header padded with spaces to a multiple of 8 bytes so the data starts aligned.
///
/// Tensor bytes are pulled from each entry's `source` one tensor at a time while the file is
/// written, so a checkpoint larger than memory can be written.
public struct SafetensorsWriter {
    /// Hands the tensor's raw little-endian bytes to `emit`, in one or more pieces.
    public typealias Source = (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    struct Entry {
        var name: String
        var dtype: DType
        var shape: [Int]
        var source: Source
        var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    public var metadata: [String: String]?
    private var entries = [Entry]()

    public init(metadata: [String: String]? = ["format": "pt"]) {
        self.metadata = metadata
    }

    public mutating func add(_ name: String, dtype: DType, shape: [Int], source: @escaping Source) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, source: source))
    }

    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        add(name, dtype: dtype, shape: shape) { emit in try bytes.withUnsafeBytes { try emit($0) } }
    }

    /// The order of dtypes in the safetensors library's `Dtype` enum (for the types MoEKit
    /// knows), which it sorts by, descending.
    static func dtypeRank(_ dtype: DType) -> Int {
        switch dtype {
        case .bool: return 0
        case .u8: return 1
        case .i8: return 2
        case .f8e5m2: return 3
        case .f8e4m3: return 4
        case .f8e8m0: return 5
        case .i16: return 6
        case .f16: return 7
        case .bf16: return 8
        case .i32: return 9
        case .u32: return 10
        case .f32: return 11
        case .f64: return 12
        case .i64: return 13
        }
    }

    private var ordered: [Entry] {
        entries.sorted { (-Self.dtypeRank($0.dtype), $0.name) < (-Self.dtypeRank($1.dtype), $1.name) }
    }

    /// The 8-byte length and the padded header JSON.
    public func header() throws -> [UInt8] {
        var names = Set<String>()
        for entry in entries where !names.insert(entry.name).inserted {
            throw SafetensorsWriterError.duplicateTensor(name: entry.name)
        }
        var parts = [String]()
        if let metadata {
            let fields = metadata.sorted { $0.key < $1.key }.map { "\(Self.quoted($0.key)):\(Self.quoted($0.value))" }
            parts.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        var offset = 0
        for entry in ordered {
            let shape = entry.shape.map(String.init).joined(separator: ",")
            parts.append("\(Self.quoted(entry.name)):{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + entry.byteCount)]}")
            offset += entry.byteCount
        }
        var json = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        json += [UInt8](repeating: UInt8(ascii: " "), count: (8 - json.count % 8) % 8)
        var out = [UInt8]()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json
    }

    /// Writes the file to `url.partial` and renames it into place, so a reader never sees
    /// half a file under the final name.
    public func write(to url: URL) throws {
        let partial = url.appendingPathExtension("partial")
        let fm = FileManager.default
        try? fm.removeItem(at: partial)
        guard fm.createFile(atPath: partial.path, contents: nil), let handle = FileHandle(forWritingAtPath: partial.path) else {
            throw SafetensorsWriterError.cannotWrite(file: partial.path, reason: "cannot create the file")
        }
        // File errors become `cannotWrite`; errors from a source (a damaged store record…)
        // pass through unchanged.
        func append(_ bytes: UnsafeRawBufferPointer) throws {
            do { try handle.write(contentsOf: Data(bytes)) } catch {
                throw SafetensorsWriterError.cannotWrite(file: partial.path, reason: error.localizedDescription)
            }
        }
        do {
            defer { try? handle.close() }
            try header().withUnsafeBytes { try append($0) }
            for entry in ordered {
                var written = 0
                try entry.source { bytes in
                    written += bytes.count
                    if written <= entry.byteCount && bytes.count > 0 { try append(bytes) }
                }
                guard written == entry.byteCount else {
                    throw SafetensorsWriterError.wrongByteCount(name: entry.name, expected: entry.byteCount, actual: written)
                }
            }
            do { try handle.synchronize() } catch {
                throw SafetensorsWriterError.cannotWrite(file: partial.path, reason: error.localizedDescription)
            }
        } catch {
            try? fm.removeItem(at: partial)
            throw error
        }
        try? fm.removeItem(at: url)
        do { try fm.moveItem(at: partial, to: url) } catch {
            throw SafetensorsWriterError.cannotWrite(file: url.path, reason: "cannot rename \(partial.lastPathComponent) into place: \(error.localizedDescription)")
        }
    }

    /// A JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

public enum SafetensorsWriterError: Error, CustomStringConvertible, Equatable {
    case duplicateTensor(name: String)
    case wrongByteCount(name: String, expected: Int, actual: Int)
    case cannotWrite(file: String, reason: String)

    public var description: String {
        switch self {
        case let .duplicateTensor(name): return "safetensors writer: tensor '\(name)' was added twice"
        case let .wrongByteCount(name, expected, actual):
            return "safetensors writer: tensor '\(name)' needs \(expected) bytes for its shape and dtype but its source gave \(actual)"
        case let .cannotWrite(file, reason): return "\(file): cannot write: \(reason)"
        }
    }
}
