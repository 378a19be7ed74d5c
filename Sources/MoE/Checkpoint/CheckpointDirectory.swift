import Foundation

/// A Hugging Face checkpoint folder: `config.json`, one `model.safetensors` or shards
/// listed in `model.safetensors.index.json`, and usually `tokenizer.json`.
public final class CheckpointDirectory: TensorProvider {
    public let url: URL
    /// Every tensor name and the file that holds it.
    public let files: [SafetensorsFile]
    private let fileForTensor: [String: Int]

    public init(url: URL) throws {
        self.url = url
        let fm = FileManager.default
        let indexURL = url.appendingPathComponent("model.safetensors.index.json")
        var shardNames: [String]
        if fm.fileExists(atPath: indexURL.path) {
            shardNames = try Self.shardNames(indexURL: indexURL)
        } else {
            let listing: [String]
            do { listing = try fm.contentsOfDirectory(atPath: url.path) } catch {
                throw CheckpointError.unreadable(file: url.path, reason: "not a readable directory")
            }
            // Without an index the weights are model.safetensors (other .safetensors files in
            // the folder, such as reference outputs, are not part of the model).
            shardNames = listing.contains("model.safetensors") ? ["model.safetensors"]
                : listing.filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !shardNames.isEmpty else {
            throw CheckpointError.unreadable(file: url.path, reason: "no .safetensors files in the checkpoint directory")
        }
        var files = [SafetensorsFile]()
        var fileForTensor = [String: Int]()
        for name in shardNames {
            let file = try SafetensorsFile(url: url.appendingPathComponent(name))
            for tensor in file.tensors.keys { fileForTensor[tensor] = files.count }
            files.append(file)
        }
        self.files = files
        self.fileForTensor = fileForTensor
    }

    private static func shardNames(indexURL: URL) throws -> [String] {
        let file = indexURL.lastPathComponent
        guard let data = FileManager.default.contents(atPath: indexURL.path) else {
            throw CheckpointError.unreadable(file: file, reason: "cannot read")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let weightMap = json["weight_map"] as? [String: String] else {
            throw CheckpointError.malformedIndex(file: file, reason: "expected an object with a 'weight_map' of tensor name to file name")
        }
        for shard in Set(weightMap.values) where shard.contains("/") || shard.contains("..") {
            throw CheckpointError.malformedIndex(file: file, reason: "shard name '\(shard)' is not a plain file name")
        }
        return Set(weightMap.values).sorted()
    }

    public var location: String { url.path }

    public var tensorNames: [String] { fileForTensor.keys.sorted() }

    public func contains(_ name: String) -> Bool { fileForTensor[name] != nil }

    public func file(for name: String) throws -> SafetensorsFile {
        guard let index = fileForTensor[name] else { throw CheckpointError.missingTensor(tensor: name, location: url.path) }
        return files[index]
    }

    public func info(_ name: String) throws -> TensorInfo { try file(for: name).info(name) }

    public func shape(_ name: String) throws -> [Int] { try info(name).shape }

    public func matrix(_ name: String) throws -> Matrix { try file(for: name).matrix(name) }

    public func halfMatrix(_ name: String) throws -> HalfMatrix? { try file(for: name).halfMatrix(name) }

    /// Total bytes of all tensors as stored.
    public var storedBytes: Int {
        files.reduce(0) { $0 + $1.tensors.values.reduce(0) { $0 + $1.byteRange.count } }
    }

    /// The checkpoint's `config.json` bytes.
    public func configData() throws -> Data {
        let configURL = url.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw CheckpointError.unreadable(file: configURL.path, reason: "config.json is missing")
        }
        return data
    }
}
