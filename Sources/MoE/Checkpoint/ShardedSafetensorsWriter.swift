import Foundation

/// Writes a checkpoint's tensors as one or more `.safetensors` files the way transformers'
/// `save_pretrained` does: tensors are taken in the order they were added and a new shard
/// starts when the next tensor would push the current one past `maxShardBytes` (a tensor
/// bigger than the limit gets a shard of its own); shards are named
/// `model-00001-of-00003.safetensors` and `model.safetensors.index.json` maps every tensor to
/// its file. When everything fits in one shard the result is a plain `model.safetensors` and
/// no index, as transformers writes it. Sizes count tensor bytes only, as huggingface_hub does.
///
/// Tensor bytes are pulled from their sources while each shard is written, so memory stays
/// near one tensor whatever the checkpoint's size.
public struct ShardedSafetensorsWriter {
    public static let defaultMaxShardBytes = 5_000_000_000
    public static let indexFileName = "model.safetensors.index.json"

    public let maxShardBytes: Int
    private var entries = [(name: String, dtype: DType, shape: [Int], source: SafetensorsWriter.Source)]()

    public init(maxShardBytes: Int = Self.defaultMaxShardBytes) {
        precondition(maxShardBytes > 0, "a shard holds at least one byte")
        self.maxShardBytes = maxShardBytes
    }

    public mutating func add(_ name: String, dtype: DType, shape: [Int], source: @escaping SafetensorsWriter.Source) {
        entries.append((name, dtype, shape, source))
    }

    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        add(name, dtype: dtype, shape: shape) { emit in try bytes.withUnsafeBytes { try emit($0) } }
    }

    public var tensorCount: Int { entries.count }
    public var totalBytes: Int { entries.reduce(0) { $0 + $1.shape.reduce(1, *) * $1.dtype.byteSize } }

    /// The tensor names of each shard, in order (huggingface_hub's splitting rule).
    public var shards: [[String]] {
        var shards = [[String]](), current = [String](), currentBytes = 0
        for entry in entries {
            let bytes = entry.shape.reduce(1, *) * entry.dtype.byteSize
            if bytes > maxShardBytes {
                shards.append([entry.name])
                continue
            }
            if currentBytes + bytes > maxShardBytes, !current.isEmpty {
                shards.append(current)
                (current, currentBytes) = ([], 0)
            }
            current.append(entry.name)
            currentBytes += bytes
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }
        return shards
    }

    /// The file name of shard `index` (0-based) of `count`.
    public static func shardFileName(_ index: Int, of count: Int) -> String {
        count == 1 ? "model.safetensors" : "model-\(fiveDigits(index + 1))-of-\(fiveDigits(count)).safetensors"
    }

    private static func fiveDigits(_ n: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// Writes the shards (and the index when there are several) into `directory`; returns the
    /// names of the files written.
    @discardableResult
    public func write(to directory: URL) throws -> [String] {
        let plan = shards
        var byName = [String: Int]()
        for (i, entry) in entries.enumerated() {
            guard byName.updateValue(i, forKey: entry.name) == nil else { throw SafetensorsWriterError.duplicateTensor(name: entry.name) }
        }
        var files = [String]()
        var weightMap = [(String, String)]()
        for (index, names) in plan.enumerated() {
            let file = Self.shardFileName(index, of: plan.count)
            var writer = SafetensorsWriter()
            for name in names {
                let entry = entries[byName[name]!]
                writer.add(entry.name, dtype: entry.dtype, shape: entry.shape, source: entry.source)
                weightMap.append((name, file))
            }
            try writer.write(to: directory.appendingPathComponent(file))
            files.append(file)
        }
        if plan.count > 1 {
            let map = weightMap.sorted { $0.0 < $1.0 }
                .map { "    \(SafetensorsWriter.quoted($0.0)): \(SafetensorsWriter.quoted($0.1))" }.joined(separator: ",\n")
            let index = "{\n  \"metadata\": {\n    \"total_size\": \(totalBytes)\n  },\n  \"weight_map\": {\n\(map)\n  }\n}\n"
            let url = directory.appendingPathComponent(Self.indexFileName)
            do { try Data(index.utf8).write(to: url, options: .atomic) } catch {
                throw SafetensorsWriterError.cannotWrite(file: url.path, reason: error.localizedDescription)
            }
            files.append(Self.indexFileName)
        }
        return files
    }
}

/// A shard size as transformers' `max_shard_size` takes it: a byte count (`500000000`) or a
/// number with a unit, decimal (`KB`, `MB`, `GB`, `TB`: powers of 1000) or binary (`KiB`,
/// `MiB`, `GiB`, `TiB`: powers of 1024), case-insensitive, with an optional space.
public struct ShardSize: Sendable, Equatable, CustomStringConvertible {
    public let bytes: Int
    public let text: String

    public init(_ text: String) throws(ShardSizeError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let number = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(number.count).trimmingCharacters(in: .whitespaces).lowercased()
        let multipliers: [String: Double] = ["": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
                                             "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824, "tib": 1_099_511_627_776]
        guard let value = Double(number), let multiplier = multipliers[unit] else {
            throw .malformed(text, reason: "expected a byte count or a number with KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB")
        }
        let bytes = value * multiplier
        guard bytes >= 1, bytes < Double(Int.max) else { throw .malformed(text, reason: "a shard must hold at least one byte") }
        self.bytes = Int(bytes)
        self.text = text
    }

    public var description: String { text }
}

public enum ShardSizeError: Error, CustomStringConvertible, Equatable {
    case malformed(String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(text, reason): return "--max-shard-size '\(text)': \(reason)"
        }
    }
}
