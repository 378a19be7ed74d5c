import ExpertStore
import MoE

/// A plan's quantization of dense weights, as llama.cpp's Q4_K_M quantizes attention and the
/// output head: every attention projection, shared-expert and dense-layer projection and the
/// output head (the tied embedding when there is no separate head) at `bits` in groups of
/// `groupSize`, round to nearest. Routers, norms, biases and an untied embedding stay as stored.
public struct DenseQuantization: Codable, Sendable, Equatable {
    public var bits: Int
    public var groupSize: Int
    /// The tensors quantized (checkpoint names); those whose rows are not whole groups stay as stored.
    public var tensors: [String]

    /// The variant name of the records: `q{bits}g{group}` (shared by every plan with the same format).
    public var variant: String { "q\(bits)g\(groupSize)" }

    /// The dense tensors of `description` this quantization covers: 2-D weights other than
    /// routers, the shared-expert gate and the embedding (unless it is also the head).
    public static func candidates(_ description: ModelDescription, tensors: some TensorProvider) -> [TensorSpec] {
        let names = description.names
        let routers = Set(description.moeLayerIndices.flatMap { [names.router($0), names.sharedExpertGateName($0)].compactMap { $0 } })
        let headIsEmbedding = !tensors.contains(names.outputHead)
        return description.tensorInventory.filter { spec in
            spec.expert == nil && spec.shape.count == 2 && !routers.contains(spec.name)
                && (spec.name != names.embedding || headIsEmbedding) && tensors.contains(spec.name)
        }
    }
}

/// A store's dense tensors with a plan's quantized replacements: what the forward pass reads
/// for a plan that quantizes dense weights. Everything else comes from `base` unchanged.
public struct PlanTensorProvider: TensorProvider {
    public let base: StoreTensorProvider
    private let quantized: [String: QuantizedMatrix]

    public init(store: ExpertStore, quantization: DenseQuantization?) throws {
        base = try StoreTensorProvider(store: store)
        var quantized = [String: QuantizedMatrix]()
        for name in quantization?.tensors ?? [] {
            guard let bytes = try store.denseVariant(name, variant: quantization!.variant) else {
                throw StoreError.missingRecord(path: store.path, record: "dense variant '\(ExpertStore.denseVariantKey(name, variant: quantization!.variant))'")
            }
            do { quantized[name] = try QuantizedMatrix(decoding: bytes) } catch {
                throw StoreError.corruptRecord(path: store.path, record: "dense variant '\(name)'", reason: "\(error)")
            }
        }
        self.quantized = quantized
    }

    public var location: String { base.location }
    public func contains(_ name: String) -> Bool { base.contains(name) }
    public func shape(_ name: String) throws -> [Int] { try base.shape(name) }
    public func matrix(_ name: String) throws -> Matrix { try quantized[name]?.dequantized() ?? base.matrix(name) }
    public func halfMatrix(_ name: String) throws -> HalfMatrix? { quantized[name] == nil ? try base.halfMatrix(name) : nil }

    public func weight(_ name: String, shape: [Int], precision: WeightPrecision) throws -> any LinearWeight {
        guard let q = quantized[name] else { return try base.weight(name, shape: shape, precision: precision) }
        guard [q.rows, q.columns] == shape else {
            throw CheckpointError.wrongShape(file: location, tensor: name, expected: shape, actual: [q.rows, q.columns])
        }
        return q
    }
}
