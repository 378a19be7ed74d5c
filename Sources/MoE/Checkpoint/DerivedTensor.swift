/// A tensor the checkpoint presents under a name it does not store: cut from, or computed
/// from, stored tensors. Derivations let the rest of MoEKit see one per-expert layout however
/// a checkpoint packs its experts (fused 3-D tensors, block-quantized formats).
public struct DerivedTensor: Sendable {
    public enum Content: Sendable {
        /// Bytes `range` of the stored tensor `source` (relative to the tensor's first byte; no copy).
        case slice(source: String, range: Range<Int>)
        /// Bytes computed from the stored tensors `sources`, handed to `make` in the same order.
        case computed(sources: [String], make: @Sendable ([UnsafeRawBufferPointer]) throws -> [UInt8])
    }

    public var dtype: DType
    public var shape: [Int]
    public var content: Content

    public init(dtype: DType, shape: [Int], content: Content) {
        self.dtype = dtype
        self.shape = shape
        self.content = content
    }

    public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }

    /// The stored tensors this one is made from.
    public var sources: [String] {
        switch content {
        case .slice(let source, _): return [source]
        case .computed(let sources, _): return sources
        }
    }
}

/// What a derivation may consult besides the stored tensors.
public struct DerivationContext: Sendable {
    /// The checkpoint's config; nil when `config.json` is absent or unreadable.
    public var config: HFConfig?
    /// The family's tensor names; nil when the config does not describe a known family.
    public var names: TensorNames?
    /// The checkpoint folder, for error messages.
    public var file: String

    public init(config: HFConfig?, names: TensorNames?, file: String) {
        self.config = config
        self.names = names
        self.file = file
    }
}

/// One way a checkpoint may store tensors differently from MoEKit's per-expert names.
public protocol TensorDerivation: Sendable {
    /// The tensors it presents, by name, from the stored tensors it recognises. Throws a
    /// `CheckpointError` naming the file and tensor when a recognised tensor is malformed.
    /// Every stored tensor named as a source is hidden from the checkpoint's tensor names.
    func derive(stored: [String: TensorInfo], context: DerivationContext) throws -> [String: DerivedTensor]
}
