/// One routed expert, in whatever format its source keeps it (f32, bf16, quantized…).
/// The MoE block only needs to run it on a batch of token rows.
public protocol Expert: Sendable {
    /// `[n, hidden] → [n, hidden]`.
    func forward(_ x: Matrix) -> Matrix
    /// Bytes of weights this expert keeps in memory.
    var residentBytes: Int { get }
    /// Whether `forward` on a few rows (up to `LinearAlgebra.smallBatchLimit`) works on the
    /// calling thread alone. Such experts may run side by side on the cores; experts whose
    /// products go to OpenBLAS (which threads even a matrix-vector product) must not, or
    /// its threads and ours fight over the cores.
    var computesOnCallingThread: Bool { get }
}

extension Expert {
    public var computesOnCallingThread: Bool { false }
}

extension FeedForward: Expert {
    public var residentBytes: Int { byteCount }
}

/// Where the MoE block gets expert weights from. The safetensors checkpoint and the
/// expert store both implement it, so the forward pass does not care which is used.
public protocol ExpertSource: Sendable {
    func expert(layer: Int, index: Int) throws -> any Expert
}

/// Every routed expert of a checkpoint loaded into memory, as stored or widened to f32.
public struct LoadedExperts: ExpertSource {
    private let experts: [Int: [any Expert]]

    public init(description: ModelDescription, tensors: some TensorProvider, precision: WeightPrecision = .stored) throws {
        var experts = [Int: [any Expert]]()
        for l in description.moeLayerIndices {
            let moe = description.layers[l].moe!
            experts[l] = try (0..<moe.expertCount).map { e in
                try tensors.routedExpert(layer: l, index: e, description: description, precision: precision)
            }
        }
        self.experts = experts
    }

    public func expert(layer: Int, index: Int) throws -> any Expert {
        guard let layerExperts = experts[layer], layerExperts.indices.contains(index) else {
            throw ModelError.noSuchExpert(layer: layer, expert: index)
        }
        return layerExperts[index]
    }

    public var residentBytes: Int { experts.values.joined().reduce(0) { $0 + $1.residentBytes } }
}
