import Foundation

/// A Hugging Face checkpoint folder: `config.json`, one `model.safetensors` or shards
/// listed in `model.safetensors.index.json`, and usually `tokenizer.json`.
///
/// Tensors are presented under MoEKit's per-expert names: `derivations` turn other packings
/// (fused 3-D expert tensors, …) into those names, and the stored tensors they consume are
/// hidden, so importing, loading and fingerprinting see one layout.
public final class CheckpointDirectory: TensorProvider {
    public let url: URL
    /// Every tensor name and the file that holds it.
    public let files: [SafetensorsFile]
    private let fileForTensor: [String: Int]
    private let derived: [String: DerivedTensor]
    /// Stored tensors that derived tensors are made from, presented only through them.
    private let consumed: Set<String>

    /// The derivations a checkpoint is read with unless told otherwise, in order: each sees
    /// only the stored tensors that earlier ones did not consume, so a family's own layout
    /// comes before the generic fused one.
    public static let standardDerivations: [any TensorDerivation] = [MXFP4ExpertTensors(), GptOssExpertTensors(), FusedExpertTensors()]

    public init(url: URL, derivations: [any TensorDerivation] = CheckpointDirectory.standardDerivations) throws {
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
        (derived, consumed) = try Self.derive(derivations, files: files, fileForTensor: fileForTensor, url: url)
    }

    private static func derive(_ derivations: [any TensorDerivation], files: [SafetensorsFile], fileForTensor: [String: Int],
                               url: URL) throws -> ([String: DerivedTensor], Set<String>) {
        guard !derivations.isEmpty else { return ([:], []) }
        let stored = fileForTensor.mapValues { index in files[index] }.reduce(into: [String: TensorInfo]()) { out, entry in
            out[entry.key] = entry.value.tensors[entry.key]
        }
        let configData = FileManager.default.contents(atPath: url.appendingPathComponent("config.json").path)
        let config = configData.flatMap { try? HFConfig.load($0, file: "config.json") }
        let names = configData.flatMap { try? Architectures.describe(configData: $0).names }
        let context = DerivationContext(config: config, names: names, file: url.path)
        var derived = [String: DerivedTensor]()
        var consumed = Set<String>()
        for derivation in derivations {
            for (name, tensor) in try derivation.derive(stored: stored.filter { !consumed.contains($0.key) }, context: context) {
                guard derived[name] == nil, stored[name] == nil || tensor.sources.contains(name) else {
                    throw CheckpointError.malformedTensor(file: url.path, tensor: name, reason: "is stored both under its own name and inside another tensor")
                }
                derived[name] = tensor
                consumed.formUnion(tensor.sources)
            }
        }
        return (derived, consumed)
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

    /// Every tensor the checkpoint presents, derived ones included, sorted.
    public var tensorNames: [String] {
        (fileForTensor.keys.filter { !consumed.contains($0) } + derived.keys).sorted()
    }

    /// Every tensor as the files store it, sorted.
    public var storedTensorNames: [String] { fileForTensor.keys.sorted() }

    public func contains(_ name: String) -> Bool {
        derived[name] != nil || (fileForTensor[name] != nil && !consumed.contains(name))
    }

    /// The file that stores `name` (a stored tensor's name, not a derived one's).
    public func file(for name: String) throws -> SafetensorsFile {
        guard let index = fileForTensor[name] else { throw CheckpointError.missingTensor(tensor: name, location: url.path) }
        return files[index]
    }

    /// A presented tensor's dtype and shape (a derived tensor has no byte range of its own:
    /// use `tensorBytes`).
    public func layout(_ name: String) throws -> (dtype: DType, shape: [Int]) {
        if let tensor = derived[name] { return (tensor.dtype, tensor.shape) }
        let info = try storedInfo(name)
        return (info.dtype, info.shape)
    }

    /// A presented tensor's bytes, from the map or computed by its derivation.
    public func tensorBytes(_ name: String) throws -> TensorBytes {
        guard let tensor = derived[name] else {
            let info = try storedInfo(name)
            return TensorBytes(file: try file(for: name), range: info.byteRange)
        }
        switch tensor.content {
        case .slice(let source, let range):
            let info = try file(for: source).info(source)
            let start = info.byteRange.lowerBound
            return TensorBytes(file: try file(for: source), range: (start + range.lowerBound)..<(start + range.upperBound))
        case .computed(let sources, let make):
            let inputs = try sources.map { try tensorBytesStored($0) }
            let bytes = try inputs.withUnsafeBytesOfEach { try make($0) }
            guard bytes.count == tensor.byteCount else {
                throw CheckpointError.lengthMismatch(file: url.path, tensor: name, expectedBytes: tensor.byteCount, actualBytes: bytes.count)
            }
            return TensorBytes(owned: bytes)
        }
    }

    /// A stored tensor's bytes, even when a derivation consumes it.
    private func tensorBytesStored(_ name: String) throws -> TensorBytes {
        TensorBytes(file: try file(for: name), range: try file(for: name).info(name).byteRange)
    }

    private func storedInfo(_ name: String) throws -> TensorInfo {
        guard !consumed.contains(name) else { throw CheckpointError.missingTensor(tensor: name, location: url.path) }
        return try file(for: name).info(name)
    }

    public func shape(_ name: String) throws -> [Int] { try layout(name).shape }

    public func matrix(_ name: String) throws -> Matrix {
        let (dtype, shape) = try layout(name)
        return try tensorBytes(name).withUnsafeBytes {
            try TensorDecoding.matrix($0, dtype: dtype, shape: shape, file: url.path, tensor: name)
        }
    }

    public func halfMatrix(_ name: String) throws -> HalfMatrix? {
        let (dtype, shape) = try layout(name)
        return try tensorBytes(name).withUnsafeBytes { TensorDecoding.halfMatrix($0, dtype: dtype, shape: shape) }
    }

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
